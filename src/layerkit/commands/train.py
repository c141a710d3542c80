"""`layerkit train`: train from a recipe (default: a small model on the embedded sample)."""

import sys
import time
from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a model from a recipe and leave a full record in --out",
        description="Train from a recipe. With no arguments: the default recipe, sample (the speed run's "
                    "training and net, airbench94), on the embedded CIFAR-10 sample. With --data FOLDER (from 2 "
                    "images a class): the same, its batch size, image size and model widths fitted to the data "
                    "(the first lines say what was chosen; docs/pipeline.md gives the rule). Extra key=value "
                    "arguments override any config key (`layerkit recipes --keys`: what a bare run uses). When "
                    "stdout is no terminal (a log file, a CI job), every phase prints a progress line every 20 s "
                    "($LAYERKIT_PROGRESS_SECONDS).")
    p.add_argument("--recipe", default=None, help="a recipe name (see `layerkit recipes`); default: sample")
    p.add_argument("--model", default=None, help="a zoo model name (`layerkit models`); overrides the recipe's "
                                                   "model (the default recipe's: auto, fitted to the data)")
    p.add_argument("--data", default=None, help="sample, cifar10, flowers, or a path (.npz, shards, folders)")
    p.add_argument("--keys", default=None, metavar="KEYS", dest="data_keys",
                   help="TFRecord feature names: default, flowers, tfds or encoded=KEY,label=KEY "
                        "(config key data_keys; default: detected from the first record)")
    p.add_argument("--test-data", default=None, metavar="PATH",
                   help="a separate test set; default: the data's own test split, else a stratified "
                        "test_split (0.1) carved out of --data, never trained on")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train; with --resume, extends the run to this many (the schedule is re-planned)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images a step (config key batch_size; 0, the default recipe's: fitted to the data)")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="pretrained weights of the model: a file, or a folder holding it (sets model_options.weights); "
                        "the cache is $LAYERKIT_WEIGHTS_DIR, else ~/.keras/models")
    p.add_argument("--out", default=None, help="run directory (default: runs/DATA-TIMESTAMP with the default "
                                                "recipe, else runs/RECIPE[-DATA]-TIMESTAMP)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--smoke", action="store_true", help="the recipe's seconds-long smoke variant")
    p.add_argument("--runs", type=int, default=None, metavar="N",
                   help="train N times from seeds S, S+1, ... (each a run in --out/seed-S) and report the mean "
                        "and spread of the test accuracy and of the training time, compilation stated apart")
    g = p.add_argument_group("devices and processes", "data-parallel training; these apply to this "
                             "launch, also with --resume")
    g.add_argument("--devices", type=int, default=None,
                   help="devices per process (default: all local accelerators, or the one CPU)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address for a multi-process run (or JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=int, default=None, help="processes in the run (or JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, help="this process's index (or JAX_PROCESS_ID)")
    g.add_argument("--init-timeout", type=float, default=None,
                   help="seconds to wait for every process to join before failing (default 60)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=0.05")
    p.set_defaults(func=run)


LAUNCH_FLAGS = ("devices", "coordinator", "num_processes", "process_id", "init_timeout")
NUMBER_FLAGS = ("epochs", "batch_size", "seed", "runs", "devices", "num_processes", "process_id", "init_timeout")


def run(args):
    from layerkit.training.stop import StopSignals, exit_status

    signals = StopSignals().install()  # first thing: a Ctrl-C during start-up is handled too
    try:
        from layerkit.training.compilation import use_persistent_cache

        use_persistent_cache()  # $LAYERKIT_CACHE_DIR or ~/.cache/layerkit/jax; LAYERKIT_CACHE_DIR=off: none
        results = _run(args, signals)
    finally:
        signals.restore(stopping=signals.requested)  # a signal during shutdown still stops at once
    if not results.get("stopped"):
        return 0
    if signals.received_at is not None:
        print(f"layerkit: exiting {time.monotonic() - signals.received_at:.2f} s after the "
              f"{'SIGTERM' if signals.preempt else 'signal'}", file=sys.stderr)
    return exit_status(signals, results)  # 143 after SIGTERM, 130 after Ctrl-C


def _run(args, signals) -> dict:
    from layerkit.training import apply_overrides, get_recipe, train

    from layerkit.training.config import check
    from layerkit.training.distribution import Launch

    for key in NUMBER_FLAGS:  # each in its range (config.RANGES), named as the flag
        if getattr(args, key) is not None:
            check(key, getattr(args, key), flag=True)
    launch = Launch(**{k: getattr(args, k) for k in LAUNCH_FLAGS if getattr(args, k) is not None})
    if args.resume and args.runs is not None:
        raise ValueError("--runs trains new runs; it cannot be combined with --resume (resume each seed-S folder)")
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out DIR, the run directory to continue")
        given = [k for k in ("recipe", "model", "data", "data_keys", "test_data", "batch_size", "precision", "seed",
                             "weights")
                 if getattr(args, k) is not None] + (["overrides"] if args.overrides else [])
        if given:
            print(f"layerkit train --resume: using the saved config of {_shown(args.out)}; ignoring {given}",
                  file=sys.stderr)
        signals.hint = f"continue with `layerkit train --resume --out {_shown(args.out)}`"
        return train(None, _location(args.out), resume=True, launch=launch, signals=signals, epochs=args.epochs)
    name = args.recipe or "sample"
    config = get_recipe(name, smoke_run=args.smoke)
    recipe_data = config.data
    flags = {"model": args.model, "data": args.data, "data_keys": args.data_keys, "test_data": args.test_data,
             "epochs": args.epochs,
             "batch_size": args.batch_size, "precision": args.precision, "seed": args.seed}
    config = apply_overrides(config, {k: v for k, v in flags.items() if v is not None})
    config = apply_overrides(config, args.overrides)
    if args.weights is not None:
        config = apply_overrides(config, {"model_options.weights": str(Path(args.weights).expanduser().resolve())})
    out = _location(args.out or default_run_dir(args.recipe, config.data, recipe_data, args.smoke))
    if args.runs is not None:
        if isinstance(out, str):
            raise ValueError(f"--runs writes its runs to a local folder; --out {out} is a bucket URL: train each "
                             "seed with --seed S --out URL/seed-S, or give --runs a local --out")
        from layerkit.training.runs import train_runs

        signals.hint = f"continue the run it was in with `layerkit train --resume --out {out}/seed-S`"
        print(f"layerkit train: recipe {name}, {args.runs} runs in {out}", file=sys.stderr)
        return train_runs(config, out, args.runs, signals=signals, launch=launch)
    shown = _shown(out)
    signals.hint = f"continue with `layerkit train --resume --out {shown}` (if an epoch was saved)"
    print(f"layerkit train: recipe {name}, run directory {shown}", file=sys.stderr)
    return train(config, out, launch=launch, signals=signals)


def _location(out: str):
    """--out as the library takes it: a bucket URL as given, else a local path."""
    from layerkit import storage

    return out if storage.is_remote(out) else Path(out)


def _shown(out) -> str:
    """--out as messages name it: a URL's query and user part redacted."""
    from layerkit import storage

    return storage.redact(str(out))


def default_run_dir(recipe: str | None, data: str, recipe_data: str, smoke: bool) -> str:
    """runs/NAME[-smoke]-TIME: named after the data with the default recipe (``runs/my-photos-…``),
    else after the recipe, and the data when it is not the recipe's (``runs/cnn-flowers-my-photos-…``)."""
    label = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(data.rstrip("/\\")).name or "data")
    if recipe is None:
        name = label
    else:
        name = recipe + (f"-{label}" if data != recipe_data else "")
    return f"runs/{name}{'-smoke' if smoke else ''}-{time.strftime('%Y%m%d-%H%M%S')}"
