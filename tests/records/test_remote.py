"""Shards in a bucket (issue 21): layerkit's and TensorFlow's shards read from s3:// (moto) and
gs:// (fake-gcs-server) on 127.0.0.1, and read-only over http://, by the same reader as on disk:
the same records, the same checks, side files never written into a folder layerkit did not
write, `records write` into a bucket."""

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from layerkit import cli, storage
from layerkit.data.sources import TFRecordSource, open_dataset
from layerkit.records import RecordError, ShardReader, Shards, index_records, records_info, verify_records
from layerkit.records import shardbytes
from layerkit.records.tfrecord import shard_paths

FIXTURES = Path(__file__).parent / "fixtures" / "tf_folders"
TF_FOLDERS = ["standard", "flowers", "gzip", "zlib", "empty_shard"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERKIT_RECORDS_CACHE", str(tmp_path / "side-cache"))
    monkeypatch.setattr(cli, "COMMANDS", ["records", "train"])
    shardbytes.CACHE.clear()


def upload_folder(local: Path, url: str) -> dict:
    for f in sorted(local.rglob("*")):
        if f.is_file():
            storage.upload(f, storage.join(url, f.relative_to(local).as_posix()))
    return storage.listing(url)


def reads(source) -> list:
    return [[int(y), hashlib.sha256(b).hexdigest()] for y, b in
            zip(source.labels, source.encoded_many(np.arange(len(source))))]


def test_tensorflow_shards_read_from_a_bucket_as_from_disk_and_nothing_is_written_there(bucket, tmp_path):
    for name in TF_FOLDERS:
        upload_folder(FIXTURES / name, storage.join(bucket, name))
    before = storage.listing(bucket)
    for name in TF_FOLDERS:
        url = storage.join(bucket, name)
        remote, local = open_dataset(url), open_dataset(str(FIXTURES / name))
        assert remote.keys.describe() == local.keys.describe()
        assert reads(remote) == reads(local)
        assert verify_records(url) == verify_records(FIXTURES / name)
        info = records_info(url)
        assert info == records_info(FIXTURES / name)
        assert index_records(url)["records"] == 10
        assert set(TFRecordSource(url).labels_source) == {"labels file"}  # from the per-user cache now
        assert verify_records(url)["records"] == 10
    assert storage.listing(bucket) == before  # a foreign folder: nothing written into the bucket
    assert len(list((tmp_path / "side-cache").iterdir())) == 2 * 8  # index + labels of each of 8 shards
    # one shard by its URL, a list of URLs, a folder URL with a trailing slash
    gz = storage.join(bucket, "gzip", "data.tfrecords")
    assert shard_paths(gz) == [gz] and ShardReader(gz).compression == "GZIP"
    assert shard_paths(storage.join(bucket, "standard") + "/") == [
        storage.join(bucket, "standard", f"train.tfrecord-0000{k}-of-00002") for k in range(2)]
    beam = storage.join(bucket, "beam")  # Apache Beam's name for a GZIP shard
    storage.upload(FIXTURES / "gzip" / "data.tfrecords", storage.join(beam, "data-00000-of-00001.tfrecord.gz"))
    assert reads(open_dataset(beam)) == reads(open_dataset(str(FIXTURES / "gzip")))
    both = Shards(shard_paths(storage.join(bucket, "standard")))
    assert both.read_many([0, 9, 4]) == Shards(FIXTURES / "standard").read_many([0, 9, 4])


def test_a_changed_object_is_scanned_again(bucket):
    url = storage.join(bucket, "standard")
    upload_folder(FIXTURES / "standard", url)
    index_records(url)
    assert set(TFRecordSource(url).labels_source) == {"labels file"}
    shard = storage.join(url, "train.tfrecord-00000-of-00002")
    end = int(ShardReader(shard).offsets[2])
    storage.write(shard, storage.read(shard)[:end])  # a new version: its first two records only
    changed = TFRecordSource(url)
    assert changed.labels_source == ["scan", "labels file"] and len(changed) == 2 + 5


def test_layerkit_records_written_to_a_bucket_read_verify_and_refuse_a_second_write(bucket, embedded_pack, tmp_path,
                                                                                   capsys):
    url = storage.join(bucket, "cifar")
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "3", "--seed", "1"]) == 0
    names = sorted(storage.listing(url))
    assert names == [".layerkit/" + f"records-0000{k}-of-00003.tfrecord{s}" for k in range(3)
                     for s in (".index", ".labels")] + ["dataset.json"] + [
                         f"records-0000{k}-of-00003.tfrecord" for k in range(3)]
    local = tmp_path / "local"
    assert cli.main(["records", "write", str(embedded_pack), str(local), "--shards", "3", "--seed", "1"]) == 0
    remote = open_dataset(url)
    assert remote.labels_source == ["labels file"] * 3  # its side files, read from the bucket
    assert reads(remote) == reads(open_dataset(str(local)))
    capsys.readouterr()
    assert cli.main(["records", "verify", url]) == 0
    assert "ok: 1000 records in 3 shards, 10 classes" in capsys.readouterr().out
    assert cli.main(["records", "info", url]) == 0
    assert "records: 1000 in 3 shards" in capsys.readouterr().out
    assert cli.main(["records", "write", str(embedded_pack), url]) == 2  # refused: records there already
    err = capsys.readouterr().err
    assert f"{url} already holds records" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "2", "--overwrite"]) == 0  # the fix
    assert sorted(n for n in storage.listing(url) if not n.startswith(".")) == [
        "dataset.json", "records-00000-of-00002.tfrecord", "records-00001-of-00002.tfrecord"]
    assert len(open_dataset(url)) == 1000
    storage.write(storage.join(bucket, "other", "notes.txt"), b"mine")
    assert cli.main(["records", "write", str(embedded_pack), storage.join(bucket, "other"), "--overwrite"]) == 2
    assert "not all of them records layerkit wrote: write the records to an empty prefix" in capsys.readouterr().err
    assert storage.listing(storage.join(bucket, "other")) == {"notes.txt": 4}  # the user's object stays
    assert list((tmp_path / "side-cache" / ".staging").iterdir()) == []  # every staging folder removed


def test_verify_names_the_url_of_a_corrupted_object(bucket, embedded_pack, capsys):
    url = storage.join(bucket, "cifar")
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "2"]) == 0
    shard = storage.join(url, "records-00001-of-00002.tfrecord")
    data = bytearray(storage.read(shard))
    data[5000] ^= 0xFF  # a byte inside a record's payload
    storage.write(shard, bytes(data))
    capsys.readouterr()
    assert cli.main(["records", "verify", url]) == 1
    err = capsys.readouterr().err
    assert f"FAILED: {shard}, record " in err and "fails its CRC" in err, err


def test_batches_fetch_once_when_the_set_fits_and_exactly_when_not(s3_bucket, embedded_pack, monkeypatch):
    url = storage.join(s3_bucket, "cifar")
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "3"]) == 0
    calls = []
    real = storage.read_ranges
    monkeypatch.setattr(storage, "read_ranges", lambda u, a, b: calls.append(len(a)) or real(u, a, b))
    source = open_dataset(url)
    batch = np.random.default_rng(0).permutation(1000)[:64]  # records of all 3 shards
    calls.clear()
    first = source.encoded_many(batch)
    assert calls == [3]  # one call: the one block of each shard, concurrently
    assert source.encoded_many(batch) == first and calls == [3]  # kept: no request again
    monkeypatch.setenv("LAYERKIT_REMOTE_CACHE", "1K")  # the set no longer fits: exact ranges
    shardbytes.CACHE.clear()
    calls.clear()
    assert source.encoded_many(batch) == first
    assert len(calls) == 1 and 3 <= calls[0] <= 64  # one concurrent call of the batch's records
    # a reader pickled for a worker process reopens the object, and refuses it once changed
    reader = source._shards.readers[0]
    again = pickle.loads(pickle.dumps(reader))
    assert again.read_many([0, 5]) == reader.read_many([0, 5])
    shard = storage.join(url, "records-00000-of-00003.tfrecord")
    data = bytearray(storage.read(shard))
    data[-10] ^= 1  # same size, another ETag
    storage.write(shard, bytes(data))
    with pytest.raises(RecordError, match="the object changed"):
        pickle.loads(pickle.dumps(reader))


def test_remote_cache_size_is_checked(monkeypatch):
    assert shardbytes.remote_cache_bytes({"LAYERKIT_REMOTE_CACHE": "512M"}) == 512 << 20
    assert shardbytes.remote_cache_bytes({}) == 1 << 30
    with pytest.raises(ValueError, match=r"LAYERKIT_REMOTE_CACHE must be a size in bytes, e.g. 512M.*'lots'"):
        shardbytes.remote_cache_bytes({"LAYERKIT_REMOTE_CACHE": "lots"})


def test_shards_read_over_plain_http(s3_bucket, embedded_pack, tmp_path, capsys):
    """moto serves public objects at AWS_ENDPOINT_URL/BUCKET/KEY to unsigned GETs: an https:// data set."""
    url = storage.join(s3_bucket, "cifar")
    upload_folder(FIXTURES / "standard", storage.join(s3_bucket, "tf"))
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "2"]) == 0
    s3, name = storage.filesystem(s3_bucket)
    for key in storage.listing(s3_bucket):  # a public bucket: anyone may GET its objects, unsigned
        s3.chmod(f"{name}/{key}", "public-read")
    http = storage.join(os.environ["AWS_ENDPOINT_URL"], name)
    assert reads(open_dataset(http + "/cifar")) == reads(open_dataset(url))  # a folder holding dataset.json
    one = http + "/tf/train.tfrecord-00001-of-00002"
    assert reads(open_dataset(one)) == reads(open_dataset(str(FIXTURES / "standard" / one.rsplit("/", 1)[1])))
    assert verify_records(one)["records"] == 5
    assert index_records(one)["records"] == 5  # a foreign shard's side files: the per-user cache
    capsys.readouterr()
    assert cli.main(["records", "index", http + "/cifar"]) == 2  # layerkit's own folder, read-only
    assert "https:// folder is read-only: there is nothing to index" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="https:// folders cannot be listed: give each shard.s URL"):
        open_dataset(http + "/tf")


def test_missing_bucket_and_prefix_are_one_line_errors(bucket, capsys, tmp_path):
    missing = bucket.split("://")[0] + "://no-such-bucket-" + bucket[-6:]
    assert cli.main(["records", "verify", storage.join(missing, "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "the bucket no-such-bucket-" in err and "does not exist" in err and len(err.splitlines()) == 1, err
    assert cli.main(["train", "--smoke", "--data", storage.join(missing, "x"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"layerkit train: error: {missing}/x: the bucket {missing.split('://')[1]} does not exist (or this " \
                  "account cannot see it)", err
    assert cli.main(["records", "info", storage.join(bucket, "nothing", "here")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bucket}/nothing/here: no such object or folder" in err and len(err.splitlines()) == 1, err
    with pytest.raises(FileNotFoundError, match="no such object or folder"):
        open_dataset(storage.join(bucket, "nothing"))


def test_folders_written_before_keep_their_side_files_beside_their_shards(written):
    """The layout before .layerkit/: NAME.tfrecord.index and .labels beside the shards, still read."""
    for f in (written / ".layerkit").iterdir():
        f.rename(written / f.name)
    (written / ".layerkit").rmdir()
    source = TFRecordSource(written)
    assert source.labels_source == ["labels file"] * 3
    assert {r.index_source for r in source._shards.readers} == {"index"}
    assert verify_records(written)["records"] == 1000
    shutil.rmtree(written / "nothing", ignore_errors=True)


def test_records_written_to_a_bucket_train_one_smoke_epoch(s3_bucket, tmp_path, capsys):
    url = storage.join(s3_bucket, "small")
    assert cli.main(["records", "write", str(FIXTURES / "standard"), url]) == 0
    code = cli.main(["train", "--smoke", "--data", url, "--batch-size", "2", "--out", str(tmp_path / "run"),
                     "image_size=32", "report=false"])
    assert code == 0, capsys.readouterr().err
    results = __import__("json").loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_images"] == 2 and results["splits"]["train"]["images"] == 6


def test_decoding_processes_reopen_the_bucket_shards(s3_bucket, embedded_pack):
    from layerkit.data.pipeline import Pipeline

    url = storage.join(s3_bucket, "cifar")
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "2"]) == 0
    source = open_dataset(url)
    threads = Pipeline(source, 32, seed=5, cache_decoded=False, prefetch=0)
    processes = Pipeline(source, 32, seed=5, cache_decoded=False, processes=2)
    try:
        assert processes.processes == 2
        for step in (0, 1, 40):  # the last in the second epoch
            (a, ya), (b, yb) = threads.batch_at(step), processes.batch_at(step)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ya, yb)
    finally:
        processes.close()


def test_index_rewrites_the_side_files_of_layerkit_s_own_bucket_folder_there(s3_bucket, embedded_pack, tmp_path):
    url = storage.join(s3_bucket, "cifar")
    assert cli.main(["records", "write", str(embedded_pack), url, "--shards", "2"]) == 0
    labels = storage.join(url, ".layerkit", "records-00001-of-00002.tfrecord.labels")
    storage.delete(labels)
    assert open_dataset(url).labels_source == ["labels file", "scan"]
    assert index_records(url)["records"] == 1000
    assert storage.exists(labels)  # in its own folder, not in the per-user cache:
    assert [p.name for p in (tmp_path / "side-cache").iterdir()] == [".staging"]  # (the write's, empty)
    assert open_dataset(url).labels_source == ["labels file"] * 2
