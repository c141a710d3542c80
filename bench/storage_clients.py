"""fsspec (s3fs) vs obstore against one local S3 server (moto), side by side: import time, an
8 MB object read whole, 512 small ranged reads of it, a conditional create over an existing
object. The measurement behind docs/dependencies.md's choice of fsspec.

Standalone (it imports no layerkit): run it with the python of a throwaway environment holding
both clients, e.g. ``python3 -m venv /tmp/probe && /tmp/probe/bin/pip install fsspec s3fs
obstore 'moto[server]' numpy && /tmp/probe/bin/python bench/storage_clients.py``.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x",
                          AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT"))
        data = os.urandom(8 << 20)
        import numpy as np

        rng = np.random.default_rng(0)
        starts = np.sort(rng.integers(0, len(data) - 2000, 512)).tolist()
        ends = [a + 1500 for a in starts]

        t = time.perf_counter()
        import obstore
        from obstore.store import S3Store
        obstore_import = time.perf_counter() - t
        store = S3Store("bench", client_options={"allow_http": True})
        obstore.put(store, "blob", data)
        t = time.perf_counter()
        whole = obstore.get(store, "blob").bytes().to_bytes()
        ob_whole = time.perf_counter() - t
        t = time.perf_counter()
        got = obstore.get_ranges(store, "blob", starts=starts, ends=ends, coalesce=0)
        ob_ranges = time.perf_counter() - t
        assert whole == data and bytes(got[0]) == data[starts[0]:ends[0]]
        try:
            obstore.put(store, "blob", b"x", mode="create")
            ob_create = "overwrote"
        except Exception as err:
            ob_create = f"refused ({type(err).__name__})"

        t = time.perf_counter()
        import s3fs
        s3fs_import = time.perf_counter() - t
        fs = s3fs.S3FileSystem()
        t = time.perf_counter()
        whole = fs.cat_file("bench/blob")
        fs_whole = time.perf_counter() - t
        t = time.perf_counter()
        got = fs.cat_ranges(["bench/blob"] * len(starts), starts, ends)
        fs_ranges = time.perf_counter() - t
        assert whole == data and got[0] == data[starts[0]:ends[0]]
        try:
            fs.pipe_file("bench/blob", b"x", mode="create")
            fs_create = "overwrote"
        except Exception as err:
            fs_create = f"refused ({type(err).__name__})"

        print(f"{'':28s} {'obstore':>12s} {'s3fs':>12s}")
        print(f"{'import (s)':28s} {obstore_import:12.3f} {s3fs_import:12.3f}")
        print(f"{'8 MB object whole (s)':28s} {ob_whole:12.3f} {fs_whole:12.3f}")
        print(f"{'512 ranged reads (req/s)':28s} {512 / ob_ranges:12.0f} {512 / fs_ranges:12.0f}")
        print(f"{'create over existing':28s} {ob_create:>12s} {fs_create:>12s}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
