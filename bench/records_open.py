"""Opening TFRecord shards: with labels files vs parsing every record, side by side.

    python bench/records_open.py ../shared/data/cifar10/train.npz --shards 16

Writes SRC as shards into a temporary folder (`write_records`), then times `TFRecordSource`
opening it (best of --repeats) with the labels files, without them (every record parsed), and
after `index_records` wrote them again; prints the ratio.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from layerkit.records import index_records, write_records
from layerkit.data.sources import TFRecordSource


def best_open(folder, repeats):
    best, source = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        source = TFRecordSource(folder)
        best = min(best, time.perf_counter() - start)
    return best, source


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/records_open.py", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="an .npz pack, class folders or CIFAR-10 batches")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="records_open_"))
    try:
        start = time.perf_counter()
        info = write_records(args.src, folder, shards=args.shards)
        print(f"wrote {info['records']} records in {args.shards} shards in {time.perf_counter() - start:.1f} s")
        with_labels, source = best_open(folder, args.repeats)
        assert set(source.labels_source) == {"labels file"}
        for path in folder.glob(".layerkit/*.labels"):
            path.unlink()
        scanned, plain = best_open(folder, args.repeats)
        assert set(plain.labels_source) == {"scan"} and (plain.labels == source.labels).all()
        start = time.perf_counter()
        index_records(folder)
        indexing = time.perf_counter() - start
        again, _ = best_open(folder, args.repeats)
        print(f"open with labels files: {1000 * with_labels:.0f} ms; parsing every record: {1000 * scanned:.0f} ms; "
              f"after `records index` ({indexing:.1f} s once): {1000 * again:.0f} ms")
        print(f"ratio parse / labels files: {scanned / with_labels:.0f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
