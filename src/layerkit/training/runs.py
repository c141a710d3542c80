"""`train_runs(config, workdir, runs)`: the same recipe trained from `runs` seeds, each a full run
record in ``workdir/seed-S``, summarised as mean ± spread (``summary.json``).

The accuracy is the end-of-training test accuracy (with the config's TTA when it has one),
as a speed run is judged. The time of a run is its epochs' seconds less its compilation;
the compilation is estimated as the first epoch's extra time over the median of the others
(it is stated apart, as airbench states it apart; with one epoch it cannot be told apart and
is reported as unknown). Evaluation after training is not counted.
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from layerkit._atomic import atomic_write
from layerkit.training.config import Config
from layerkit.training.checkpoints import run_write
from layerkit.training.report import read_history


def _spread(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def compile_seconds(epoch_seconds) -> float | None:
    """The first epoch's extra time over the median of the others (None with one epoch)."""
    if len(epoch_seconds) < 2:
        return None
    return max(0.0, float(epoch_seconds[0] - np.median(epoch_seconds[1:])))


def train_runs(config: Config, workdir, runs: int, verbose=None, signals=None, launch=None) -> dict:
    from layerkit.training.run import train

    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive integer. Received: runs={runs!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = "test_accuracy_final_tta" if config.tta != "none" else "test_accuracy_final"
    rows = []
    for r in range(runs):
        seed = config.seed + r
        out = workdir / f"seed-{seed}"
        result = train(dataclasses.replace(config, seed=seed), out, verbose=verbose, signals=signals, launch=launch)
        if result.get("stopped"):
            return {**result, "runs_completed": r}
        if key not in result:  # not process 0 of a multi-process run: it keeps no record
            continue
        seconds = read_history(out / "history.csv").get("epoch_seconds", [])
        compiled = compile_seconds(seconds)
        rows.append({"seed": seed, "run_dir": str(out), "test_accuracy": result[key],
                     "train_seconds": round(float(sum(seconds)) - (compiled or 0.0), 2),
                     "compile_seconds": None if compiled is None else round(compiled, 2)})
        print(f"run {r + 1}/{runs} (seed {seed}): test accuracy {100 * result[key]:.2f}%"
              f"{f' ({config.tta} TTA)' if config.tta != 'none' else ''}, training {rows[-1]['train_seconds']:.1f} s"
              + (f" + compilation {compiled:.1f} s" if compiled is not None else ""), file=sys.stderr, flush=True)
    if not rows:
        return {"runs": runs}
    acc = [row["test_accuracy"] for row in rows]
    secs = [row["train_seconds"] for row in rows]
    compiles = [row["compile_seconds"] for row in rows if row["compile_seconds"] is not None]
    summary = {
        "runs": rows, "accuracy": key, "tta": config.tta,
        "test_accuracy_mean": float(np.mean(acc)), "test_accuracy_std": _spread(acc),
        "train_seconds_mean": float(np.mean(secs)), "train_seconds_std": _spread(secs),
        "compile_seconds_mean": float(np.mean(compiles)) if compiles else None,
        "test_images": None, "config": config.to_dict(),
    }
    summary["test_images"] = json.loads((Path(rows[0]["run_dir"]) / "results.json").read_text()).get("test_images")
    with run_write(workdir, "summary.json"):
        atomic_write(workdir / "summary.json", json.dumps(summary, indent=1))
    compiled = (f"; compilation {summary['compile_seconds_mean']:.1f} s a run, not counted"
                if compiles else "; compilation not told apart (one epoch)")
    print(f"{len(rows)} runs of {config.model} on {config.data}: test accuracy {100 * np.mean(acc):.2f}% "
          f"± {100 * _spread(acc):.2f} ({', '.join(f'{100 * a:.1f}' for a in acc)})"
          f"{f', {config.tta} TTA' if config.tta != 'none' else ''}; training {np.mean(secs):.1f} s ± "
          f"{_spread(secs):.1f} a run{compiled}; summary in {workdir / 'summary.json'}", flush=True)
    return summary
