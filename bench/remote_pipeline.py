"""Remote shards against local ones: `layerkit bench pipeline` on CIFAR-10 shards read from a
local S3 server (moto, started here) and from local disk, side by side in one run.

    python bench/remote_pipeline.py [--src ../shared/data/cifar10/train.npz] [--shards 16]
                                    [--images 20000] [--repeats 5] [--remote-cache 16M]

Writes the shards with ``layerkit records write SRC TMP/shards`` into a temporary folder,
starts ``moto.server`` on 127.0.0.1, uploads the folder to ``s3://bench/cifar`` (the same
objects a ``records write`` into the bucket makes), then runs ``layerkit bench pipeline
TMP/shards --also s3://bench/cifar --variants batch-first`` (decoding every epoch, no decoded
cache; the two interleaved epoch by epoch, so a change in the machine's load falls on both). The
remote source's first epoch fetches every block it reads (`layerkit.records.shardbytes`); later
epochs read from the block cache. Ends with the line ``ratio s3://bench/cifar/TMP (batch-first,
median): R`` (target: at least 0.8 on 2 cores).
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(ROOT.parent / "shared" / "data" / "cifar10" / "train.npz"))
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--remote-cache", default=None, metavar="SIZE",
                        help="LAYERKIT_REMOTE_CACHE for the run (e.g. 16M: the shards no longer fit, and each "
                             "batch's records are fetched exactly)")
    args = parser.parse_args()

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ENDPOINT_URL": endpoint}
    if args.remote_cache is not None:
        env["LAYERKIT_REMOTE_CACHE"] = args.remote_cache
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory(prefix="remote-bench-") as tmp:
            local = Path(tmp) / "shards"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "layerkit.cli", "records", "write", args.src, str(local),
                            "--shards", str(args.shards)], env=env, check=True)
            print(f"wrote the shards in {time.perf_counter() - t:.1f} s", flush=True)
            for _ in range(300):
                try:
                    urllib.request.urlopen(endpoint + "/moto-api/", timeout=2)
                    break
                except OSError:
                    time.sleep(0.1)
            urllib.request.urlopen(urllib.request.Request(endpoint + "/bench", method="PUT"), timeout=30)
            upload = ("import sys; from pathlib import Path; from layerkit import storage\n"
                      "root = Path(sys.argv[1])\n"
                      "for f in sorted(root.rglob('*')):\n"
                      "    if f.is_file(): storage.upload(f, storage.join(sys.argv[2], f.relative_to(root).as_posix()))\n")
            url = "s3://bench/cifar"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", upload, str(local), url], env=env, check=True)
            size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
            print(f"uploaded {size / 1e6:.1f} MB to {url} on moto ({endpoint}) in {time.perf_counter() - t:.1f} s",
                  flush=True)
            probe = ("import statistics, sys, time; from layerkit import storage\n"
                     "url = storage.join(sys.argv[1], 'records-00000-of-%05d.tfrecord' % int(sys.argv[2]))\n"
                     "size = storage.info(url)['size']\n"
                     "starts = [(k * 7919 * 1024) % (size - 1024) for k in range(500)]\n"
                     "t = time.perf_counter(); storage.read_ranges([url] * 500, starts, [a + 1024 for a in starts])\n"
                     "small = 500 / (time.perf_counter() - t)\n"
                     "n = min(size, 8 << 20); times = []\n"
                     "for _ in range(5):\n"
                     "    t = time.perf_counter(); storage.read_ranges(url, [0], [n]); times.append(time.perf_counter() - t)\n"
                     "print(f'moto: {small:,.0f} ranged GETs of 1 KB a second (500 in one concurrent call); '\n"
                     "      f'one {n / 1e6:.1f} MB ranged GET in {statistics.median(times) * 1e3:.0f} ms (median of 5)')\n")
            subprocess.run([sys.executable, "-c", probe, url, str(args.shards)], env=env, check=True)
            bench = [sys.executable, "-m", "layerkit.cli", "bench", "pipeline", str(local), "--also", url,
                     "--variants", "batch-first", "--no-layers", "--images", str(args.images),
                     "--repeats", str(args.repeats), "--json"]
            return subprocess.run(bench, env=env).returncode
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
