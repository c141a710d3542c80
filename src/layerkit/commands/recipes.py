"""`layerkit recipes`: list the training recipes (and, with --keys, every config key)."""


def add_parser(subparsers):
    p = subparsers.add_parser("recipes", help="list the training recipes")
    p.add_argument("name", nargs="?", help="print this recipe's resolved config")
    p.add_argument("--keys", action="store_true", help="list every config key with its default")
    p.set_defaults(func=run)


def run(args):
    from layerkit.training import config as cfg
    from layerkit.training import recipes

    if args.keys:
        defaults = cfg.Config().to_dict()
        for key in cfg.keys():
            print(f"{key:<18} {defaults[key]!r}")
        return 0
    if args.name:
        print(recipes.get(args.name).to_json())
        return 0
    for name in recipes.names():
        print(f"{name:<22} {recipes.describe(name)}")
    return 0
