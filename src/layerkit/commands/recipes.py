"""`layerkit recipes`: list the training recipes (and, with --keys, every config key)."""


def add_parser(subparsers):
    p = subparsers.add_parser("recipes", help="list the training recipes")
    p.add_argument("name", nargs="?", help="print this recipe's resolved config")
    p.add_argument("--keys", action="store_true",
                   help="list every config key with the value a bare `layerkit train` uses (the default recipe)")
    p.set_defaults(func=run)


def key_comments() -> dict:
    """Each config key's comment in `Config`'s source: what it means and its units."""
    import inspect

    from layerkit.training import config as cfg

    comments = {}
    for line in inspect.getsource(cfg.Config).splitlines():
        head, _, comment = line.partition("  # ")
        name = head.strip().split(":", 1)[0]
        if name in cfg.keys() and comment:
            comments[name] = comment.strip()
    return comments


def run(args):
    from layerkit.training import config as cfg
    from layerkit.training import recipes

    if args.keys:
        bare = recipes.get("sample").to_dict()
        comments = key_comments()
        print("Config keys with the values a bare `layerkit train` uses (the default recipe, sample; "
              "`layerkit recipes NAME` prints another's). Set any with KEY=VALUE.")
        for key in cfg.keys():
            value = repr(bare[key])
            print(f"{key:<18} {value:<10} {comments.get(key, '')}".rstrip())
        return 0
    if args.name:
        print(recipes.get(args.name).to_json())
        return 0
    for name in recipes.names():
        print(f"{name:<22} {recipes.describe(name)}")
    return 0
