"""`layerkit predict RUN_DIR IMAGE...`: class names and probabilities for image files."""


def add_parser(subparsers):
    p = subparsers.add_parser("predict", help="classify image files with a run's weights")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--top", type=int, default=3, help="classes shown per image, most probable first (default 3)")
    p.set_defaults(func=run)


def run(args):
    from layerkit.training.compilation import use_persistent_cache
    import sys

    from layerkit.training.inference import describe_weights, predict_files

    from layerkit.training.remote import local_copy

    use_persistent_cache()
    with local_copy(args.run_dir) as run_dir:  # a bucket run: its files copied here
        for k, (path, ranked) in enumerate(predict_files(run_dir, args.images, weights=args.weights, top=args.top)):
            if k == 0:
                print(f"layerkit predict: {describe_weights(run_dir, args.weights)} of {args.run_dir}", file=sys.stderr)
            print(path + ": " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))
    return 0
