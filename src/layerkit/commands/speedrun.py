"""`layerkit speedrun cifar10`: the CIFAR-10 speed run (mean and spread over several runs)."""

import json
import sys
from pathlib import Path

TARGETS = ("cifar10",)
# Flags that override a field of SpeedrunConfig of the same name (dashes for underscores).
OVERRIDES = {"runs": int, "epochs": float, "batch_size": int, "lr": float, "muon_lr": float,
             "bias_lr": float, "head_lr": float, "weight_decay": float, "momentum": float,
             "optimizer": str, "precision": str, "data": str, "data_dir": str, "train_limit": int,
             "test_limit": int, "seed": int, "tta_level": int, "translate": int, "cutout": int,
             "flip": str}


def add_parser(subparsers):
    from layerkit.speedrun import PRESETS

    p = subparsers.add_parser(
        "speedrun", help="train a compact net on CIFAR-10 as fast as possible, several runs",
        description="Data decoded once and kept on the device, augmentation inside the jitted "
                    "step, bf16, patch whitening, Muon or Nesterov SGD, test-time augmentation. "
                    "Prints each run's test accuracy and seconds (compilation excluded and stated apart).")
    p.add_argument("target", choices=TARGETS, help="what to race on")
    p.add_argument("--preset", choices=sorted(PRESETS), default="short",
                   help="short: Muon, 8 epochs (vs airbench94_muon); short-sgd: SGD + lookahead, 9.9 "
                        "epochs (vs airbench94); long: wider, residual, 37 epochs (vs airbench96)")
    for name, kind in OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help="override the preset's " + name)
    p.add_argument("--widths", default=None, help="channels of the three blocks, e.g. 64,256,256")
    p.add_argument("--no-lookahead", action="store_true", help="no lookahead averaging of the weights")
    p.add_argument("--lookahead", action="store_true", help="lookahead averaging of the weights")
    p.add_argument("--smoke", action="store_true",
                   help="seconds on CPU: 512 sample images, one epoch, a tiny net, 2 runs")
    p.add_argument("--out", default=None, help="write the summary as JSON to this file")
    p.set_defaults(func=run)


def run(args):
    from layerkit.speedrun import preset, smoke_config
    from layerkit.speedrun.runner import speedrun

    config = preset(args.preset)
    if args.smoke:
        config = smoke_config(config)
    changes = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    if args.widths is not None:
        try:
            changes["widths"] = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise ValueError(f"--widths takes three integers like 64,256,256. Received: {args.widths!r}") from None
    if args.lookahead and args.no_lookahead:
        raise ValueError("--lookahead and --no-lookahead contradict each other; give one")
    if args.lookahead or args.no_lookahead:
        changes["lookahead"] = bool(args.lookahead)
    config = config.replace(**changes)
    summary = speedrun(config, out=lambda line: print(line, flush=True))
    summary["preset"] = args.preset
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
        print(f"speedrun: summary written to {args.out}", file=sys.stderr)
    return 0
