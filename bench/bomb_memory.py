"""Peak memory of refusing a file that claims to be large: each bomb opened in a child process,
its peak resident memory measured over the child's own baseline (after its imports).

- ``cifar``: a CIFAR-10 python batch folder whose ``data_batch_1`` is a sparse file of
  ``--cifar-gib`` GiB (no disk used): refused by its size, unread;
- ``npz``: an ``.npz`` pack whose ``jpeg`` member inflates to ``--npz-mib`` MiB of zeros from
  about 1/230 of that (deflate level 1): refused by its declared size, uninflated;
- ``gzip``: a GZIP TFRecord shard inflating to ``--gzip-mib`` MiB of zeros, opened with
  ``max_decompressed_bytes=--gzip-limit-mib``: refused by a streaming count, never held.

Linux only (``/proc/self/status``: ``VmHWM`` reset through ``/proc/self/clear_refs`` after the
imports, so the peak is the attempt's alone). Prints one line per bomb, the last line one JSON
object::

    .venv/bin/python bench/bomb_memory.py                       # the sizes the issue names
    .venv/bin/python bench/bomb_memory.py --npz-mib 256 --gzip-mib 128 --gzip-limit-mib 32   # quick
"""

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

CHUNK = 16 << 20

CHILD = """
import json, sys
{imports}
def kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
try:
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
except OSError:
    pass
base = kib("VmRSS")
try:
    {attempt}
    outcome = "accepted"
except ValueError as err:
    outcome = str(err)
print(json.dumps({{"baseline_mib": base / 1024, "peak_over_baseline_mib": (kib("VmHWM") - base) / 1024,
                  "outcome": outcome}}))
"""


def make_cifar(folder: Path, gib: float) -> Path:
    folder.mkdir(parents=True)
    batch = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, protocol=2)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (folder / name).write_bytes(batch)
    with open(folder / "data_batch_1", "r+b") as f:
        f.truncate(int(gib * (1 << 30)))  # sparse: no disk used
    return folder


def make_npz(path: Path, mib: int) -> Path:
    header = _npy_header(np.dtype(np.uint8), (mib << 20,))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("jpeg.npy", "w", force_zip64=True) as f:
            f.write(header)
            zeros = bytes(CHUNK)
            for k in range(0, mib << 20, CHUNK):
                f.write(zeros[: min(CHUNK, (mib << 20) - k)])
        for name, value in (("offsets", np.array([0, mib << 20])), ("labels", np.array([0])),
                            ("classes", np.array(["a"]))):
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, value, allow_pickle=False)
    return path


def make_gzip(path: Path, mib: int) -> Path:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(CHUNK)
    with open(path, "wb") as f:
        for k in range(0, mib << 20, CHUNK):
            f.write(c.compress(zeros[: min(CHUNK, (mib << 20) - k)]))
        f.write(c.flush())
    return path


def _npy_header(dtype, shape) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": dtype.str, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def measure(imports: str, attempt: str) -> dict:
    code = CHILD.format(imports=imports, attempt=attempt)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(cifar_gib=3.0, npz_mib=3072, gzip_mib=1536, gzip_limit_mib=None) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="layerkit-bombs-") as tmp:
        tmp = Path(tmp)
        folder = make_cifar(tmp / "cifar", cifar_gib)
        results["cifar"] = {"file": f"data_batch_1, sparse, {cifar_gib:g} GiB", **measure(
            "from layerkit.data.cifar import CifarSource", f"CifarSource({str(folder)!r}, 'train')")}
        npz = make_npz(tmp / "bomb.npz", npz_mib)
        results["npz"] = {"file": f"{npz.stat().st_size / 2**20:.1f} MiB .npz, jpeg member {npz_mib} MiB", **measure(
            "from layerkit.data.npz import load_npz", f"load_npz({str(npz)!r})")}
        shard = make_gzip(tmp / "bomb.tfrecord.gz", gzip_mib)
        limit = "" if gzip_limit_mib is None else f", max_decompressed_bytes={gzip_limit_mib << 20}"
        results["gzip"] = {"file": f"{shard.stat().st_size / 2**20:.1f} MiB GZIP shard, {gzip_mib} MiB inflated"
                                   + (f", limit {gzip_limit_mib} MiB" if gzip_limit_mib else ", default limit"),
                           **measure("from layerkit.records.tfrecord import ShardReader",
                                     f"ShardReader({str(shard)!r}{limit})")}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-gib", type=float, default=3.0)
    parser.add_argument("--npz-mib", type=int, default=3072)
    parser.add_argument("--gzip-mib", type=int, default=1536)
    parser.add_argument("--gzip-limit-mib", type=int, default=None, help="default: the reader's own (1 GiB)")
    args = parser.parse_args()
    results = run(args.cifar_gib, args.npz_mib, args.gzip_mib, args.gzip_limit_mib)
    for name, r in results.items():
        print(f"{name}: {r['file']}: peak {r['peak_over_baseline_mib']:.1f} MiB over a baseline of "
              f"{r['baseline_mib']:.0f} MiB; {r['outcome']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
