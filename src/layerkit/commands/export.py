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
    from layerkit import storage
    from layerkit.export import export_run
    from layerkit.training.remote import local_copy, upload_tree

    import tempfile
    from pathlib import Path

    with local_copy(args.run_dir) as run_dir, tempfile.TemporaryDirectory() as scratch:
        remote_out = args.out if args.out and storage.is_remote(args.out) else None
        local_out = Path(scratch) / storage.name(remote_out) if remote_out else args.out  # --out URL: made here first
        out = export_run(run_dir, args.format, out=local_out, weights=args.weights)
        if storage.is_remote(args.run_dir) or remote_out:  # beside the bucket's checkpoint, or where --out says
            target = remote_out or storage.join(args.run_dir, Path(out).relative_to(run_dir).as_posix())
            upload_tree(out, target)
            out = target
    print(f"exported {args.weights} weights of {args.run_dir} as {args.format}: {out}")
    return 0
