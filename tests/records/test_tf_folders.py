"""Folders TensorFlow wrote (fixtures/make_tf_fixtures.py, TF 2.21): each opens, verifies, reports
`info`, indexes and trains one --smoke epoch through the CLI, with no dataset.json or side file."""

import fnmatch
import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from layerkit import cli
from layerkit.data.sources import TFRecordSource, open_dataset
from layerkit.records import RecordError, index_records, records_info, verify_records, write_records
from layerkit.records.shardbytes import LocalBytes
from layerkit.records.tfrecord import ShardReader, inflate

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "tf_folders.json").read_text())
FOLDERS = ["standard", "flowers", "tfds", "gzip", "zlib", "empty_shard"]
KEYS = {"standard": "default", "flowers": "flowers", "tfds": "tfds", "gzip": "default", "zlib": "default",
        "empty_shard": "default"}


@pytest.fixture
def folder(tmp_path, request):
    """A copy of a fixture folder (indexing writes beside the shards)."""
    return Path(shutil.copytree(FIXTURES / "tf_folders" / request.param, tmp_path / request.param))


def _as_tf_reads(source):
    return [[int(y), hashlib.sha256(b).hexdigest()] for y, b in
            zip(source.labels, source.encoded_many(np.arange(len(source))))]


@pytest.mark.parametrize("folder", FOLDERS, indirect=True)
def test_opens_verifies_infos_and_indexes_as_tensorflow_reads_it(folder):
    name = folder.name
    source = open_dataset(str(folder))
    assert isinstance(source, TFRecordSource) and source.keys.describe() == KEYS[name]
    assert _as_tf_reads(source) == REFERENCE[name]  # labels and image bytes, in TF's order
    assert verify_records(folder) == {"records": 10, "shards": len(list(folder.iterdir())), "keys": KEYS[name],
                                      "classes": 2}
    info = records_info(folder)
    assert info["classes"] == {"0": 5, "1": 5} and info["image_sizes"] == {"8x8": 10}
    assert info["keys"] == KEYS[name]
    assert info["compression"] == [{"gzip": "GZIP", "zlib": "ZLIB"}.get(name, "none")]
    shards = sorted(p.name for p in folder.iterdir())
    assert index_records(folder)["records"] == 10
    # the side files went to the per-user cache: the folder holds its shards alone, so a
    # TensorFlow user's globs (train-*, *-of-*, *.tfrec*) still match shards only
    assert sorted(p.name for p in folder.iterdir()) == shards
    again = TFRecordSource(folder)
    assert set(again.labels_source) == {"labels file"}  # opening reads no record now
    assert _as_tf_reads(again) == REFERENCE[name]
    assert verify_records(folder)["records"] == 10  # the side files agree with the records


def test_unknown_keys_name_what_was_found_and_the_keys_that_fit(tmp_path, capsys, monkeypatch):
    folder = FIXTURES / "tf_folders" / "unknown_keys"
    with pytest.raises(RecordError, match=r"data.tfrecord, record 0, byte offset 0: no known image key set fits"
                                          r".* its features are 'id' \(bytes\), 'img_bytes' \(bytes\), 'target' "
                                          r"\(int64\)\. Pass --keys encoded=id,label=target or "
                                          r"--keys encoded=img_bytes,label=target"):
        open_dataset(str(folder))
    source = open_dataset(str(folder), keys="encoded=img_bytes,label=target")
    assert _as_tf_reads(source) == REFERENCE["unknown_keys"]
    monkeypatch.setattr(cli, "COMMANDS", ["records"])
    assert cli.main(["records", "verify", str(folder)]) == 1
    assert "--keys encoded=img_bytes,label=target" in capsys.readouterr().err
    assert cli.main(["records", "verify", str(folder), "--keys", "encoded=img_bytes,label=target"]) == 0
    assert "ok: 10 records in 1 shards, 2 classes (keys: encoded=img_bytes,label=target)" in capsys.readouterr().out


def test_cli_verify_info_index_on_a_tf_folder(tmp_path, capsys, monkeypatch):
    folder = shutil.copytree(FIXTURES / "tf_folders" / "flowers", tmp_path / "flowers")
    monkeypatch.setattr(cli, "COMMANDS", ["records"])
    assert cli.main(["records", "verify", str(folder)]) == 0
    assert cli.main(["records", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "records: 10 in 2 shards" in out and "keys: flowers; compression: none" in out
    assert cli.main(["records", "index", str(folder)]) == 0
    assert "indexed 10 records in 2 shards" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["flowers00-5.tfrec", "flowers01-5.tfrec"]
    assert sorted(fnmatch.filter(os.listdir(folder), "*.tfrec*")) == ["flowers00-5.tfrec", "flowers01-5.tfrec"]
    assert cli.main(["records", "verify", str(folder / "flowers00-5.tfrec")]) == 0  # one shard, named
    assert "ok: 5 records in 1 shards" in capsys.readouterr().out


def test_compression_named_or_detected_and_its_faults(tmp_path):
    shard = FIXTURES / "tf_folders" / "gzip" / "data.tfrecords"
    assert ShardReader(shard).compression == "GZIP"
    assert len(ShardReader(shard, compression="GZIP")) == 10
    with pytest.raises(RecordError, match="corrupt ZLIB stream"):
        ShardReader(shard, compression="ZLIB")
    with pytest.raises(RecordError, match="length field fails its CRC"):
        ShardReader(shard, compression="none")  # read as plain framing: not a TFRecord
    with pytest.raises(ValueError, match="compression must be GZIP, ZLIB, none"):
        ShardReader(shard, compression="bz2")
    cut = tmp_path / "cut.tfrecords"
    cut.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(RecordError, match="truncated GZIP stream"):
        ShardReader(cut)
    raw = LocalBytes(shard)
    try:
        with pytest.raises(RecordError, match="decompresses to more than 100 bytes"):
            inflate(raw, "GZIP", shard, limit=100)
    finally:
        raw.close()
    trailing = tmp_path / "trailing.tfrecords"
    trailing.write_bytes(shard.read_bytes() + b"xyz")
    with pytest.raises(RecordError, match="3 bytes follow the end of the GZIP stream"):
        ShardReader(trailing)
    big = tmp_path / "bomb.tfrecord"  # 64 MiB of zeros in 64 KiB: refused, not allocated past the limit
    big.write_bytes(gzip.compress(b"\0" * (64 << 20)))
    with pytest.raises(RecordError, match="decompresses to more than 1048576 bytes"):
        ShardReader(big, max_decompressed_bytes=1 << 20)


@pytest.mark.parametrize("name", FOLDERS)
def test_trains_one_smoke_epoch_through_the_cli(name, tmp_path, capsys):
    folder = FIXTURES / "tf_folders" / name
    code = cli.main(["train", "--smoke", "--data", str(folder), "--batch-size", "2", "--out", str(tmp_path / "run"),
                     "image_size=32", "report=false"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_images"] == 2 and results["splits"]["train"]["images"] == 6


def test_side_files_of_a_foreign_shard_are_named_after_its_identity(tmp_path, monkeypatch):
    """A TF-written shard's side files live in $LAYERKIT_RECORDS_CACHE under a name made of the
    shard's identity: a shard changed afterwards (another size and time) is scanned again, never
    read with the old index; a layerkit-written folder keeps them in its .layerkit/ subfolder,
    where TensorFlow's globs of its shards (records-*, *.tfrec*, *-of-*) do not reach."""
    monkeypatch.setenv("LAYERKIT_RECORDS_CACHE", str(tmp_path / "cache"))
    folder = Path(shutil.copytree(FIXTURES / "tf_folders" / "standard", tmp_path / "standard"))
    index_records(folder)
    assert len(list((tmp_path / "cache").iterdir())) == 4  # an index and a labels file per shard
    assert set(TFRecordSource(folder).labels_source) == {"labels file"}
    shard = folder / "train.tfrecord-00000-of-00002"
    end = int(ShardReader(shard).offsets[2])
    shard.write_bytes(shard.read_bytes()[:end])  # rewritten: its first two records only
    changed = TFRecordSource(folder)
    assert changed.labels_source == ["scan", "labels file"] and len(changed) == 2 + 5

    written = tmp_path / "ours"
    write_records(TFRecordSource(folder / "train.tfrecord-00001-of-00002"), written, shards=1)
    names = sorted(p.name for p in written.iterdir())
    assert names == [".layerkit", "dataset.json", "records-00000-of-00001.tfrecord"]
    for glob in ("records-*", "records-*-of-*", "*.tfrec*", "*.tfrecord"):
        assert fnmatch.filter(names, glob) == ["records-00000-of-00001.tfrecord"]
    assert sorted(p.name for p in (written / ".layerkit").iterdir()) == [
        "records-00000-of-00001.tfrecord.index", "records-00000-of-00001.tfrecord.labels"]
