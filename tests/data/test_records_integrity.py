"""Nothing lost, nothing silently wrong: records folders whose files changed after writing.

Counts in dataset.json against the shards, malformed dataset.json, non-regular files in place
of side files, temporary files of killed writers.
"""

import json
import os
import warnings
from importlib import resources

import numpy as np
import pytest

from layerkit.data.record_labels import scan_labels, write_labels
from layerkit.data.records import index_records, verify_records, write_records
from layerkit.data.sources import TFRecordSource, open_dataset
from layerkit.data.tfrecord import RecordError, ShardReader, index_path, write_index


@pytest.fixture()
def written(tmp_path):
    """The embedded test sample (1,000 real CIFAR-10 JPEGs) as 3 shards of 333, 334, 333."""
    with resources.as_file(resources.files("layerkit.data") / "embedded" / "cifar10-test.npz") as pack:
        write_records(pack, tmp_path / "o", shards=3, seed=1)
    return tmp_path / "o"


def shard(folder, k):
    return sorted(folder.glob("*.tfrecord"))[k]


# === Item 3: records going missing or appearing ===


def empty(path):
    path.write_bytes(b"")


def cut_at_a_record_boundary(path):
    with ShardReader(path) as r:
        end = int(r.offsets[len(r) // 2])
    path.write_bytes(path.read_bytes()[:end])


def append_records(path):
    with ShardReader(path) as r:
        end = int(r.offsets[5])
    data = path.read_bytes()
    path.write_bytes(data + data[:end])


@pytest.mark.parametrize("change, held", [(empty, 0), (cut_at_a_record_boundary, 166), (append_records, 338)])
@pytest.mark.parametrize("reindex", [False, True])
def test_a_shard_holding_other_records_than_dataset_json_says_is_an_error(written, change, held, reindex):
    path = shard(written, 0)
    change(path)
    if reindex:  # index and labels files rewritten to fit the shard: only dataset.json still knows
        offsets = write_index(path)
        with ShardReader(path) as r:
            write_labels(path, scan_labels(r), offsets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stale index, when not rewritten
        with pytest.raises(RecordError, match=rf"records-00000-of-00003.tfrecord: holds {held} records, dataset.json says 333"):
            TFRecordSource(written)
        with pytest.raises(RecordError, match=rf"records-00000-of-00003.tfrecord: .*dataset.json says 333"):
            verify_records(written)


def test_a_shard_of_another_size_is_an_error(written):
    path = shard(written, 2)
    with ShardReader(path) as r:
        offsets = np.array(r.offsets)
    info = json.loads((written / "dataset.json").read_text())
    info["shards"][2]["bytes"] += 1
    (written / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(RecordError, match=rf"records-00002-of-00003.tfrecord: is {offsets[-1]} bytes, dataset.json says {offsets[-1] + 1}"):
        TFRecordSource(written)


def test_class_counts_that_differ_from_the_labels_are_an_error(written):
    info = json.loads((written / "dataset.json").read_text())
    a, b = info["classes"][:2]
    info["counts"][a] += 1
    info["counts"][b] -= 1
    (written / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(RecordError, match=rf"dataset.json: class counts differ from the shards' labels: '{a}': 100 in the shards, 101 in the file"):
        TFRecordSource(written)


def test_a_listed_shard_that_is_missing_is_named(written):
    shard(written, 1).unlink()
    with pytest.raises(RecordError, match="records-00001-of-00003.tfrecord: shard listed in dataset.json is missing"):
        TFRecordSource(written)


@pytest.mark.parametrize("edit, field, received", [
    (lambda i: i.update(shards=5), "shards", "5"),
    (lambda i: i.update(shards=[]), "shards", r"\[\]"),
    (lambda i: i["shards"].__setitem__(1, "x"), r"shards\[1\]", "'x'"),
    (lambda i: i["shards"][0].update(file=3), r"shards\[0\].file", "3"),
    (lambda i: i["shards"][0].update(file="../x.tfrecord"), r"shards\[0\].file", "'../x.tfrecord'"),
    (lambda i: i["shards"][2].update(records="333"), r"shards\[2\].records", "'333'"),
    (lambda i: i["shards"][2].update(records=-1), r"shards\[2\].records", "-1"),
    (lambda i: i["shards"][2].update(bytes=1.5), r"shards\[2\].bytes", "1.5"),
    (lambda i: i.update(records=None), "records", "None"),
    (lambda i: i.update(records=999), "records", "999"),
    (lambda i: i.update(classes="airplane"), "classes", "'airplane'"),
    (lambda i: i.update(classes=[1, 2]), "classes", r"\[1, 2\]"),
    (lambda i: i.update(keys=["image/encoded"]), "keys", r"\['image/encoded'\]"),
    (lambda i: i.update(keys={"encoded": 7}), "keys", r"\{'encoded': 7\}"),
    (lambda i: i.update(keys={"colour": "x"}), "keys", r"\{'colour': 'x'\}"),
    (lambda i: i.update(counts=[1]), "counts", r"\[1\]"),
    (lambda i: i["counts"].update(zebra=0), "counts", r"unknown: \['zebra'\]"),
])
def test_a_malformed_dataset_json_names_the_file_and_the_field(written, edit, field, received):
    info = json.loads((written / "dataset.json").read_text())
    edit(info)
    (written / "dataset.json").write_text(json.dumps(info))
    for open_it in (TFRecordSource, verify_records, index_records, lambda f: open_dataset(str(f))):
        with pytest.raises(RecordError, match=rf"dataset.json: field '{field}' must be .*{received}"):
            open_it(written)


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"), ("[1, 2]", "expected a JSON object, got list"), (b"\xff\xfe", "not valid JSON"),
    ("[" * 100000, "not valid JSON"),
])
def test_dataset_json_that_is_not_a_json_object(written, text, message):
    (written / "dataset.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(RecordError, match=f"dataset.json: {message}"):
        TFRecordSource(written)
