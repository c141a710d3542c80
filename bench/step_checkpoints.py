"""The cost of step checkpoints: `layerkit train` without and with `checkpoint_every`, side by side.

    .venv/bin/python bench/step_checkpoints.py [--every 10] [--jobs default,wrn-16-4] [--out DIR]

For each job it trains the same run twice in this process, first without step checkpoints, then
with ``checkpoint_every=EVERY`` (steps), and prints the training time of each (the sum of
history.csv's epoch_seconds: compilation is in the first epoch of both), the step checkpoints
saved, the mean time spent in each (`StepCheckpoints._save`: the sync of the step's state into
the variables and the one checkpoint writer's .keras + manifest commit; it includes waiting for
the steps the host dispatched ahead, which the device computes meanwhile, so the training-time
difference is the cost, not this), and the size of a checkpoint file. The machine's load
average comes first: time only a quiet machine.

Jobs: ``default`` is `layerkit train` as a bare run makes it (recipe sample on the embedded
sample: airbench94 at widths 16/64/64, batch 256, 6 epochs); ``wrn-16-4`` is the same recipe
with model=wrn-16-4 (2.7M parameters) on 1,024 training images, batch 128, 2 epochs. Both
with tta=none and report=false (training time only). ``--smoke``: the recipe's --smoke variant
with each job's model (seconds; to check the script).
"""

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

JOBS = {
    "default": [],
    "wrn-16-4": ["model=wrn-16-4", "model_options={}", "epochs=2", "train_limit=1024", "batch_size=128"],
}
COMMON = ["tta=none", "report=false"]


def _train_seconds(run: Path) -> list:
    with open(run / "history.csv", newline="") as f:
        return [float(r["epoch_seconds"]) for r in csv.DictReader(f)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="checkpoint_every, in steps (default 10)")
    parser.add_argument("--jobs", default="default,wrn-16-4")
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder, removed)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()

    from layerkit.training import apply_overrides, get_recipe, train
    from layerkit.training.checkpoints import StepCheckpoints

    saves = []  # seconds in each step checkpoint's hook
    original = StepCheckpoints._save

    def timed(self, step, batch):
        began = time.perf_counter()
        try:
            return original(self, step, batch)
        finally:
            saves.append(time.perf_counter() - began)

    StepCheckpoints._save = timed
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="layerkit-bench-steps-"))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; checkpoint_every={args.every} steps"
          f"{'; --smoke' if args.smoke else ''}", flush=True)
    try:
        for job in args.jobs.split(","):
            job_overrides = [o for o in JOBS[job] if o.startswith("model")] if args.smoke else JOBS[job]
            base = apply_overrides(get_recipe("sample", smoke_run=args.smoke), [*job_overrides, *COMMON])
            rows = {}
            for every in ("", str(args.every)):
                run = root / f"{job}-{'every-' + every if every else 'off'}"
                saves.clear()
                began = time.perf_counter()
                train(apply_overrides(base, [f"checkpoint_every={every}"]), run, verbose=0)
                wall = time.perf_counter() - began
                seconds = _train_seconds(run)
                size = max((p.stat().st_size for p in (run / "checkpoints").glob("*.keras")), default=0)
                rows[every or "off"] = (sum(seconds), seconds, wall, list(saves), size)
            (off, off_epochs, off_wall, _, size), (on, on_epochs, on_wall, timed_saves, _) = rows.values()
            print(f"\n{job}: training {off:.1f} s without step checkpoints, {on:.1f} s with checkpoint_every="
                  f"{args.every} ({on - off:+.1f} s, {100 * (on - off) / off:+.1f}%); wall {off_wall:.1f} / {on_wall:.1f} s")
            print(f"  epochs without: {', '.join(f'{s:.1f}' for s in off_epochs)} s; with: "
                  f"{', '.join(f'{s:.1f}' for s in on_epochs)} s")
            if timed_saves:
                print(f"  {len(timed_saves)} step checkpoints of {size / 1e6:.2f} MB: {statistics.mean(timed_saves):.3f} s "
                      f"each on average in the hook (max {max(timed_saves):.3f} s; with the wait for the steps in flight)",
                      flush=True)
            else:
                print("  no step checkpoint was saved (fewer steps than checkpoint_every)", flush=True)
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
