"""`layerkit evaluate RUN_DIR`: test accuracy of a finished (or stopped) run's weights."""


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="evaluate a run's best or last weights on its test split")
    p.add_argument("run_dir")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped images")
    p.set_defaults(func=run)


def run(args):
    from layerkit.training.inference import evaluate_run

    result = evaluate_run(args.run_dir, weights=args.weights, tta=args.tta)
    print(f"{args.weights} weights{' + flip TTA' if args.tta else ''}: test accuracy "
          f"{result['accuracy']:.4f}, loss {result['loss']:.4f} on {result['images']} images")
    return 0
