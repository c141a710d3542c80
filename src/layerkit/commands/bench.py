"""`layerkit bench NAME ...`: run one of the benchmarks in `layerkit.bench`."""

import importlib


def add_parser(subparsers):
    from layerkit.bench import BENCHMARKS

    p = subparsers.add_parser("bench", help="run a benchmark (prints a side-by-side ratio)")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        bp = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(bp)
        bp.set_defaults(func=module.run)
