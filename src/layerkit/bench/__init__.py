"""Benchmarks: each prints figures measured side by side in one run, ending with a ratio line.

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and is
listed in `BENCHMARKS`; `layerkit bench NAME` runs it, `bench/NAME.py` too.
"""

BENCHMARKS = {
    "pipeline": "layerkit.bench.pipeline",
    "throughput": "layerkit.bench.throughput",
    "revnet": "layerkit.bench.revnet",
    "inference": "layerkit.bench.inference",
}
