"""`layerkit export RUN_DIR --format onnx|saved_model|keras`: a run's checkpoint for inference."""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="export a run's checkpoint as ONNX, SavedModel or an inference .keras",
        description="Pixels 0..255 (float32, batch x H x W x C) in, class probabilities out; the augmentation "
                    "layers are dropped. onnx: TensorFlow-free, needs `pip install 'layerkit[onnx]'`; "
                    "saved_model: needs TensorFlow; keras: no optimizer, loads with layerkit.load_model.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--format", choices=("onnx", "saved_model", "keras"), required=True)
    p.add_argument("--out", default=None, help="output path (default: beside the checkpoint, "
                                               "e.g. RUN/best.onnx, RUN/best_saved_model, RUN/best-inference.keras)")
    p.add_argument("--weights", choices=("best", "last"), default="best")
    p.set_defaults(func=run)


def run(args):
    from layerkit.export import export_run

    out = export_run(args.run_dir, args.format, out=args.out, weights=args.weights)
    print(f"exported {args.weights} weights of {args.run_dir} as {args.format}: {out}")
    return 0
