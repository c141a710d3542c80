"""keras.applications backbones' weights: Keras's download-and-hash path against a local server,
and the error that names every place looked at. No test touches the real network."""

import dataclasses
import hashlib
import http.server
import socket
import threading

import pytest

from layerkit import models
from layerkit.models import applications, pretrained
from layerkit.models.pretrained import CACHE_ENV, WeightsError


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _spec(url, file_hash):
    return pretrained.Weights(file_name="tiny_notop.h5", url=url, file_hash=file_hash, input_size=32,
                              preprocessing="tf", load=lambda model, path: None)


def test_download_is_hash_checked_and_cached(server, tmp_path, monkeypatch):
    root, base = server
    payload = b"weights " * 1000
    (root / "tiny_notop.h5").write_bytes(payload)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    good = _spec(f"{base}/tiny_notop.h5", hashlib.sha256(payload).hexdigest())
    path = pretrained.resolve("tiny", good, "imagenet")
    assert path == tmp_path / "cache" / "tiny_notop.h5" and path.read_bytes() == payload
    (root / "tiny_notop.h5").unlink()  # from the cache now: no second download
    assert pretrained.resolve("tiny", good, "imagenet") == path

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache2"))
    (root / "tiny_notop.h5").write_bytes(payload)
    bad = _spec(f"{base}/tiny_notop.h5", hashlib.md5(b"something else").hexdigest())
    with pytest.raises(WeightsError, match=r"tiny_notop.h5 \(download failed: .*"):
        pretrained.resolve("tiny", bad, "imagenet")
    assert not (tmp_path / "cache2" / "tiny_notop.h5").exists()  # a file with the wrong hash is not kept


def test_missing_weights_name_every_place_looked(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/xception_notop.h5"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    constructor, options, smallest, spec = applications.APPLICATIONS["xception"]
    monkeypatch.setitem(applications.APPLICATIONS, "xception",
                        (constructor, options, smallest, dataclasses.replace(spec, url=url)))
    with pytest.raises(WeightsError) as err:
        models.create("xception", weights="imagenet", input_shape=(71, 71, 3))
    message = str(err.value)
    assert f"{tmp_path / 'cache' / spec.file_name} (not there" in message
    assert f"{url} (download failed" in message and "--weights PATH" in message
    with pytest.raises(WeightsError, match="not a file or folder"):
        models.create("xception", weights=str(tmp_path / "nothing.h5"), input_shape=(71, 71, 3))


def test_cli_weights_that_cannot_be_had_exit_2(tmp_path, capsys):
    from layerkit.cli import main

    missing = tmp_path / "xception_notop.h5"
    code = main(["train", "--recipe", "xception-flowers", "--data", "sample", "--weights", str(missing),
                 "--out", str(tmp_path / "run"), "image_size=71"])
    assert code == 2
    assert f"weights={str(missing)!r}, which is not a file or folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
