"""layerkit's batch-first pipeline against tf.data on the same shards, interleaved, with the spread.

Runs, round after round, one process of each (the order reversed every other round):

- tf.data: ``TF_PYTHON bench/tfdata_pipeline.py SHARDS --epochs E`` (a throwaway environment
  holding TensorFlow; it imports no layerkit), augmentation as an XLA function in ``map``;
- layerkit: ``layerkit bench pipeline SHARDS --variants batch-first,cached --repeats E --json``
  (decoding every epoch, and decoded once and cached).

Each process times E epochs after a warm-up; a round's ratio is the median of its layerkit
epochs over the median of its tf.data epochs. Prints every round, the pooled medians, the
ratios' median and spread, and the load average; the last line is one JSON object. Only the
standard library is used here::

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    layerkit records write ../shared/data/cifar10/train.npz /tmp/bench/cifar10 --shards 8
    .venv/bin/python bench/tfdata_compare.py /tmp/bench/cifar10 --tf-python /tmp/tfvenv/bin/python --rounds 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in:\n{text[-2000:]}")


def run(cmd) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}")
    return last_json(done.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shards", help="folder of *.tfrecord shards written by `layerkit records write`")
    p.add_argument("--tf-python", required=True, help="python of an environment holding TensorFlow")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per process")
    p.add_argument("--images", type=int, default=None, help="first N records (default: all)")
    p.add_argument("--processes", type=int, default=0, help="layerkit's decoding worker processes (default 0)")
    args = p.parse_args(argv)

    images = ["--images", str(args.images)] if args.images else []
    tf_cmd = [args.tf_python, str(HERE / "tfdata_pipeline.py"), args.shards, "--epochs", str(args.epochs), *images]
    lk_cmd = [sys.executable, "-m", "layerkit.cli", "bench", "pipeline", args.shards, "--variants",
              "batch-first,cached", "--repeats", str(args.epochs), "--no-layers", "--json",
              "--images", str(args.images or 10**9), "--processes", str(args.processes)]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, shards {args.shards}",
          flush=True)
    rounds = []
    for r in range(args.rounds):
        order = [("tf", tf_cmd), ("lk", lk_cmd)]
        got = {name: run(cmd) for name, cmd in (order if r % 2 == 0 else order[::-1])}
        tf_rates = got["tf"]["images_per_s"]
        lk_rates = got["lk"]["images_per_s"]
        row = {"tf.data": tf_rates, "layerkit": lk_rates["batch-first"], "cached": lk_rates["cached"],
               "load": [got["tf"]["loadavg_1min"], *got["lk"]["loadavg_1min"]]}
        row["ratio"] = statistics.median(row["layerkit"]) / statistics.median(row["tf.data"])
        row["ratio_cached"] = statistics.median(row["cached"]) / statistics.median(row["tf.data"])
        rounds.append(row)
        print(f"round {r + 1}: tf.data {tf_rates}, layerkit {row['layerkit']}, cached {row['cached']}; "
              f"ratio {row['ratio']:.2f} (cached {row['ratio_cached']:.2f}); load {row['load']}", flush=True)
    pooled = {k: statistics.median([v for row in rounds for v in row[k]]) for k in ("tf.data", "layerkit", "cached")}
    ratios = [row["ratio"] for row in rounds]
    loads = [v for row in rounds for v in row["load"]]
    print(f"pooled images/s: tf.data {pooled['tf.data']:,.0f}, layerkit decoding every epoch "
          f"{pooled['layerkit']:,.0f}, layerkit cached {pooled['cached']:,.0f}")
    print(f"ratio layerkit / tf.data: median {statistics.median(ratios):.2f}, spread {min(ratios):.2f}-"
          f"{max(ratios):.2f} over {len(ratios)} rounds; pooled {pooled['layerkit'] / pooled['tf.data']:.2f}; "
          f"load average {min(loads):.1f}-{max(loads):.1f}")
    print(json.dumps({"rounds": rounds, "pooled": pooled, "ratio_median": statistics.median(ratios),
                      "ratio_spread": [min(ratios), max(ratios)], "load": [min(loads), max(loads)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
