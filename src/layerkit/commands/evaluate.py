"""`layerkit evaluate RUN_DIR`: test accuracy of a finished (or stopped) run's weights."""


def add_parser(subparsers):
    p = subparsers.add_parser("evaluate", help="evaluate a run's best or last weights on its test split")
    p.add_argument("run_dir")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.add_argument("--tta", nargs="?", const="flip", default="none", choices=("none", "flip", "6view"),
                   help="test-time augmentation: flip (the default of a bare --tta: image and mirror) or "
                        "6view (airbench's: those and their 1-pixel shifts)")
    p.set_defaults(func=run)


def run(args):
    from layerkit.training.compilation import use_persistent_cache
    from layerkit.training.inference import describe_weights, evaluate_run

    from layerkit.training.remote import local_copy

    use_persistent_cache()
    with local_copy(args.run_dir) as run_dir:  # a bucket run: its files copied here
        result = evaluate_run(run_dir, weights=args.weights, tta=args.tta)
        print(f"{describe_weights(run_dir, args.weights)}{f' + {args.tta} TTA' if args.tta != 'none' else ''}: "
              f"test accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} on {result['images']} images")
    return 0
