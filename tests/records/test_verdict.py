"""One verdict on a folder of records: `records verify`, `records info`, `open_dataset` and
`train` all start from `open_records`, so none of them accepts a folder another refuses
(issue 18 items 6, 8 and 10)."""

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from layerkit import cli
from layerkit.data.sources import TFRecordSource, open_dataset
from layerkit.records import RecordError, records_info, verify_records
from layerkit.records.tfrecord import index_path

FIXTURES = Path(__file__).parent / "fixtures" / "tf_folders"


def every_reader(folder):
    """What each reader makes of `folder`: its error message, or "ok"."""
    outcomes = {}
    for name, read in (("open", lambda: TFRecordSource(folder)), ("open_dataset", lambda: open_dataset(str(folder))),
                       ("verify", lambda: verify_records(folder)), ("info", lambda: records_info(folder))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                read()
            outcomes[name] = "ok"
        except ValueError as err:
            outcomes[name] = str(err)
    return outcomes


def refused_by_all(folder, message):
    outcomes = every_reader(folder)
    for name, outcome in outcomes.items():
        assert message in outcome, f"{name}: {outcome}"


@pytest.fixture
def records_cli(monkeypatch, capsys):
    """`layerkit records ...` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMANDS", ["records"])

    def run(*argv):
        code = cli.main(["records", *map(str, argv)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# === Item 8: dataset.json's shard sizes, classes; a bad index ===


def test_verify_checks_the_shard_sizes_dataset_json_gives(written, records_cli):
    info = json.loads((written / "dataset.json").read_text())
    info["shards"][1]["bytes"] += 1
    (written / "dataset.json").write_text(json.dumps(info))
    refused_by_all(written, "records-00001-of-00003.tfrecord: is ")
    code, _, err = records_cli("verify", written)
    assert code == 1 and "dataset.json says" in err


def test_a_class_no_record_uses_is_an_error(written, records_cli):
    info = json.loads((written / "dataset.json").read_text())
    info["classes"].append("zebra")  # 11 classes, labels 0..9
    (written / "dataset.json").write_text(json.dumps(info))
    refused_by_all(written, "dataset.json: names 11 classes, but no record has the label of 'zebra'")
    del info["counts"]  # a hand-written dataset.json without counts: the class list alone
    (written / "dataset.json").write_text(json.dumps(info))
    refused_by_all(written, "dataset.json: names 11 classes, but no record has the label of 'zebra'")
    code, _, err = records_cli("info", written)
    assert code == 2 and "'zebra'" in err and len(err.strip().splitlines()) == 1
    info["counts"] = {c: (100 if c != "zebra" else 0) for c in info["classes"]}  # said to be empty: accepted
    (written / "dataset.json").write_text(json.dumps(info))
    assert set(every_reader(written).values()) == {"ok"}
    assert TFRecordSource(written).classes[-1] == "zebra"


@pytest.mark.parametrize("break_it", ["garbage", "missing"])
def test_a_bad_index_is_read_alike_by_info_and_training(written, break_it, records_cli):
    """info and training both scan the shard with a warning; verify, which checks side files, fails."""
    path = index_path(sorted(written.glob("*.tfrecord"))[0])
    if break_it == "garbage":
        path.write_bytes(b"not an index")
    else:
        path.unlink()
    with pytest.warns(UserWarning, match="scanning the shard"):
        source = TFRecordSource(written)
    with pytest.warns(UserWarning, match="scanning the shard"):
        info = records_info(written)
    assert info["records"] == len(source) == 1000
    code, out, err = records_cli("info", written)
    assert code == 0 and "records: 1000 in 3 shards" in out and "scanning the shard" in err
    code, _, err = records_cli("verify", written)
    assert code == 1 and "records-00000-of-00003.tfrecord: " in err and "index" in err


# === Item 8: a folder without dataset.json: -of-N names, copies ===


@pytest.fixture
def tf_standard(tmp_path):
    """TensorFlow's train.tfrecord-0000k-of-00002, made a set of 3 (the second shard copied)."""
    folder = tmp_path / "standard"
    shutil.copytree(FIXTURES / "standard", folder)
    return folder


def test_a_gap_in_numbered_shards_names_the_missing_one(tf_standard, records_cli):
    (tf_standard / "train.tfrecord-00001-of-00002").rename(tf_standard / "train.tfrecord-00001-of-00003")
    (tf_standard / "train.tfrecord-00000-of-00002").rename(tf_standard / "train.tfrecord-00000-of-00003")
    refused_by_all(tf_standard, "shard train.tfrecord-00002-of-00003 is missing: the names say 3 shards (-of-00003), "
                                "the folder holds 2")
    for action in ("verify", "info"):
        code, _, err = records_cli(action, tf_standard)
        assert code in (1, 2) and "train.tfrecord-00002-of-00003 is missing" in err and "Traceback" not in err


def test_an_extra_shard_or_a_copy_is_an_error(tf_standard):
    extra = tf_standard / "train.tfrecord-00002-of-00002"
    shutil.copy(tf_standard / "train.tfrecord-00001-of-00002", extra)
    refused_by_all(tf_standard, "train.tfrecord-00002-of-00002: its name says shard 2 of a set of 2")
    extra.rename(tf_standard / "train.tfrecord-00001-of-00002 (copy).tfrecord")
    refused_by_all(tf_standard, "holds the same 5 records as train.tfrecord-00001-of-00002 (a copy?)")
    (tf_standard / "train.tfrecord-00001-of-00002 (copy).tfrecord").rename(tf_standard / "train.tfrecord-00000-of-00003")
    refused_by_all(tf_standard, "two sets")


# === Item 10: Apache Beam's *.tfrecord.gz ===


def test_beam_gzip_shards_are_recognised_in_a_folder_and_alone(tmp_path, records_cli):
    folder = tmp_path / "beam"
    folder.mkdir()
    shutil.copy(FIXTURES / "gzip" / "data.tfrecords", folder / "data-00000-of-00001.tfrecord.gz")
    assert set(every_reader(folder).values()) == {"ok"}
    assert verify_records(folder)["records"] == 10
    assert records_info(folder)["compression"] == ["GZIP"]
    shard = folder / "data-00000-of-00001.tfrecord.gz"
    assert len(open_dataset(str(shard))) == 10
    code, out, _ = records_cli("verify", folder)
    assert code == 0 and "ok: 10 records in 1 shards" in out


def test_train_reads_one_tfrecord_gz_file(tmp_path, capsys):
    shard = tmp_path / "data.tfrecord.gz"
    shutil.copy(FIXTURES / "gzip" / "data.tfrecords", shard)
    code = cli.main(["train", "--smoke", "--data", str(shard), "--batch-size", "2", "--out", str(tmp_path / "run"),
                     "image_size=32", "report=false"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "results.json").read_text())["splits"]["train"]["images"] == 6


# === Item 6: a dataset.json that is a symlink loop ===


def test_a_dataset_json_symlink_loop_is_one_line_exit_2(written, records_cli):
    (written / "dataset.json").unlink()
    os.symlink(written / "dataset.json", written / "dataset.json")  # a link to itself
    with pytest.raises(ValueError, match="dataset.json: cannot read a dataset.json: Too many levels of symbolic links"):
        open_dataset(str(written))
    for action in ("verify", "info"):
        code, out, err = records_cli(action, written)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "symbolic links" in err, (action, err)



@pytest.mark.parametrize("make", ["loop", "dangling", "fifo", "folder"])
def test_a_shard_name_that_is_no_regular_file_is_named_not_skipped(tmp_path, make):
    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(FIXTURES / "gzip" / "data.tfrecords", folder / "a.tfrecord")
    odd = folder / "b.tfrecord"
    {"loop": lambda: os.symlink(odd.name, odd), "dangling": lambda: os.symlink("nowhere", odd),
     "fifo": lambda: os.mkfifo(odd), "folder": lambda: odd.mkdir()}[make]()
    kind = {"loop": "a symbolic link loop", "dangling": "a dangling symbolic link", "fifo": "a FIFO",
            "folder": "a folder"}[make]
    refused_by_all(folder, f"b.tfrecord: named as a shard, but {kind}")
