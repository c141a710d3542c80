"""`layerkit speedrun cifar10`: the CIFAR-10 speed run (mean and spread over several runs)."""

import json
import sys
from pathlib import Path

TARGETS = ("cifar10",)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "speedrun", help="train a compact net on CIFAR-10 as fast as possible, several runs",
        description="Data decoded once and kept on the device, augmentation inside the jitted "
                    "step, bf16, one-cycle SGD, test-time augmentation. Prints each run's test "
                    "accuracy and training seconds (compilation excluded and stated apart).")
    p.add_argument("target", choices=TARGETS, help="what to race on")
    p.add_argument("--runs", type=int, default=None, help="independent runs (default 5)")
    p.add_argument("--epochs", type=float, default=None, help="passes over the train split (default 10)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate for batch 1024")
    p.add_argument("--widths", default=None, help="channels of the three blocks, e.g. 64,256,256")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None)
    p.add_argument("--data", default=None, help="cifar10 (default), sample, or a path")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-limit", type=int, default=None, help="use N training images (0 = all)")
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-tta", action="store_true", help="no test-time augmentation")
    p.add_argument("--smoke", action="store_true",
                   help="seconds on CPU: 512 sample images, one epoch, a tiny net, 2 runs")
    p.add_argument("--out", default=None, help="write the summary as JSON to this file")
    p.set_defaults(func=run)


def run(args):
    from layerkit.training.speedrun import SpeedrunConfig, smoke_config, speedrun

    config = SpeedrunConfig()
    if args.smoke:
        config = smoke_config(config)
    changes = {"runs": args.runs, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
               "precision": args.precision, "data": args.data, "data_dir": args.data_dir,
               "train_limit": args.train_limit, "test_limit": args.test_limit, "seed": args.seed}
    if args.widths is not None:
        try:
            changes["widths"] = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise ValueError(f"--widths takes three integers like 64,256,256. Received: {args.widths!r}") from None
    if args.no_tta:
        changes["tta"] = False
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    summary = speedrun(config, out=lambda line: print(line, flush=True))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
        print(f"speedrun: summary written to {args.out}", file=sys.stderr)
    return 0
