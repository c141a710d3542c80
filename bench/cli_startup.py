"""CLI start-up: wall time of `layerkit --help`, of each subcommand's `--help` and of `layerkit models`,
beside `python -c "import keras"` (JAX backend), which every one of them paid before the lazy imports.

    .venv/bin/python bench/cli_startup.py [--runs 5]

Prints the median of --runs runs of each (the machine's load average first: the figures scale with it).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from layerkit.cli import COMMANDS as SUBCOMMANDS  # light: the parser imports neither Keras nor JAX

SCRIPT = Path(sys.executable).with_name("layerkit")
LAYERKIT = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "layerkit.cli"]


def wall(argv, runs) -> float:
    times = []
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; median of {args.runs} runs")
    keras_s = wall([sys.executable, "-c", "import keras"], args.runs)
    help_s = wall([*LAYERKIT, "--help"], args.runs)
    subs = {name: wall([*LAYERKIT, name, "--help"], args.runs) for name in SUBCOMMANDS}
    models_s = wall([*LAYERKIT, "models"], args.runs)
    print(f"python -c 'import keras' (JAX)   {keras_s:6.2f} s")
    print(f"layerkit --help                  {help_s:6.2f} s")
    for name, s in subs.items():
        print(f"layerkit {name + ' --help':<24}{s:6.2f} s")
    print(f"layerkit models                  {models_s:6.2f} s  (the parameter table; imports Keras)")
    slowest = max([help_s, *subs.values()])
    print(f"ratio: slowest --help {slowest:.2f} s = {slowest / keras_s:.2f}x the Keras import it no longer pays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
