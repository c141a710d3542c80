"""layerkit.storage against real servers on 127.0.0.1: moto's S3 server and fake-gcs-server."""

import os
import subprocess
import sys
import time

import pytest

from layerkit import storage


def test_objects_round_trip(bucket, tmp_path):
    url = storage.join(bucket, "run", "a.bin")
    data = os.urandom(100_000)
    storage.write(url, data)
    assert storage.read(url) == data
    assert storage.info(url)["size"] == len(data)
    version = storage.info(url)["version"]
    assert version
    assert storage.read_ranges(url, [0, 500, 99_990], [10, 600, 100_000]) == [data[:10], data[500:600], data[99_990:]]
    with pytest.raises(FileExistsError):
        storage.write(url, b"other", create=True)
    assert storage.read(url) == data  # the refused create changed nothing
    storage.write(storage.join(bucket, "run", "sub", "b"), b"b", create=True)
    assert storage.listing(storage.join(bucket, "run")) == {"a.bin": len(data), "sub/b": 1}
    storage.copy(url, storage.join(bucket, "run", "c.bin"))
    assert storage.read(storage.join(bucket, "run", "c.bin")) == data
    storage.upload(_file(tmp_path, b"local"), storage.join(bucket, "up"))
    storage.download(storage.join(bucket, "up"), tmp_path / "down")
    assert (tmp_path / "down").read_bytes() == b"local"
    storage.write(url, b"new")
    assert storage.info(url)["version"] != version
    storage.delete(url)
    storage.delete(url)  # gone already: nothing to do
    assert not storage.exists(url)
    with pytest.raises(FileNotFoundError, match="a.bin does not exist"):
        storage.read(url)
    with pytest.raises(storage.StorageError, match="more than the 2 expected"):
        storage.read(storage.join(bucket, "up"), limit=2)


def _file(tmp_path, content: bytes):
    p = tmp_path / "f"
    p.write_bytes(content)
    return p


def test_a_bucket_that_does_not_exist_is_named(bucket):
    missing = bucket.split("://")[0] + "://no-such-bucket-" + bucket[-6:]
    with pytest.raises(storage.StorageError, match="the bucket no-such-bucket-.* does not exist"):
        storage.write(storage.join(missing, "x"), b"x")


def test_https_is_read_only_and_other_schemes_are_refused():
    with pytest.raises(storage.StorageError, match="read-only"):
        storage.write("https://example.com/x", b"x")
    with pytest.raises(storage.StorageError, match="ftp:// is not one of them"):
        storage.is_remote("ftp://host/x")
    assert not storage.is_remote("/data/x") and not storage.is_remote("relative/gs:/x")


def test_redaction_hides_tokens_and_users():
    assert storage.redact("https://host/b/o?X-Goog-Signature=abc&X-Goog-Credential=me") == "https://host/b/o?***"
    assert storage.redact("https://user:pw@host/o") == "https://***@host/o"
    assert storage.redact("gs://b/o") == "gs://b/o"


def test_an_unreachable_server_is_an_error_naming_the_url_after_bounded_tries(tmp_path):
    from tests.cloud_servers import S3_ENV, free_port

    env = {**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    code = ("from layerkit import storage\n"
            "try:\n    storage.read('s3://bkt/x?sig=secret')\n"
            "except storage.StorageError as e:\n    print('ERR', e)\n")
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("ERR s3://bkt/x?***: could not read it: the server did not answer after 3 tries"), out
    assert "secret" not in out.stdout
    assert time.monotonic() - t < 240  # bounded (a hang guard, not a speed target)
