"""`layerkit data download NAME`: the one command that uses the network, and only when asked."""

import os
from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("data", help="download a named data set (explicitly)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = sub.add_parser("download", help="download NAME, check its SHA-256, write TFRecord shards")
    d.add_argument("name", help="cifar10")
    d.add_argument("--data-dir", default=None,
                   help="where to put it (default: $LAYERKIT_DATA or ~/.keras/datasets)")
    d.set_defaults(func=run)


def run(args):
    from layerkit.data.download import download

    data_dir = args.data_dir or os.environ.get("LAYERKIT_DATA") or Path.home() / ".keras" / "datasets"
    root = download(args.name, data_dir)
    print(f"{args.name} is ready in {root}; train with --data {args.name}")
    return 0
