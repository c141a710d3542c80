"""Labels files beside the shards: opening reads no records; a stale or broken file is caught."""

import numpy as np
import pytest

from layerkit.records import tfrecord
from layerkit.records.example import encode_image_example, image_example_fields
from layerkit.records.labels import TRAILER, labels_path, load_labels, write_labels
from layerkit.records import verify_records
from layerkit.data.sources import TFRecordSource
from layerkit.records.tfrecord import RecordError, ShardReader, Shards, ShardWriter


def test_opening_with_labels_files_reads_no_record_and_matches_a_scan(written, monkeypatch):
    calls = []
    real = ShardReader.read_many  # every record read goes through it, also Shards.read_many's
    monkeypatch.setattr(ShardReader, "read_many", lambda self, idx, *a, **k: calls.append(len(idx)) or real(self, idx, *a, **k))
    source = TFRecordSource(written)
    assert calls == [] and source.labels_source == ["labels file"] * 3
    for path in written.glob(".layerkit/*.labels"):
        path.unlink()
    plain = TFRecordSource(written)
    assert plain.labels_source == ["scan"] * 3 and sum(calls) == len(plain)
    np.testing.assert_array_equal(source.labels, plain.labels)
    idx = np.arange(0, len(source), 7)
    assert source.encoded_many(idx) == plain.encoded_many(idx)


def test_a_stale_labels_file_is_an_error_at_the_first_read_never_wrong_pairs(written):
    shard = sorted(written.glob("*.tfrecord"))[0]
    with ShardReader(shard) as r:
        payloads = [r.read(i) for i in range(len(r))]
    fields = image_example_fields(payloads[0])
    relabelled = encode_image_example(fields["encoded"], (fields["label"] + 1) % 10, "jpeg", 32, 32)
    assert len(relabelled) == len(payloads[0])  # the same sizes: the file still fits the shard
    with ShardWriter(shard) as w:
        for p in [relabelled] + payloads[1:]:
            w.write(p)
    source = TFRecordSource(written)
    assert source.labels_source[0] == "labels file"
    source.encoded_many([1, 2])  # untouched records read as before
    with pytest.raises(RecordError, match=r"record 0.*does not match records-00000-of-00003.tfrecord.labels"):
        source.encoded_many([0])
    with pytest.raises(RecordError, match="disagrees with its labels file"):
        verify_records(written)


@pytest.mark.parametrize("labels_file", [True, False])
def test_a_record_rewritten_after_its_first_read_is_checked_again(written, labels_file):
    # the first read checks a record against its row; later reads slice it while its CRC is
    # unchanged: a record rewritten in place (same size, valid frame, another label) is caught
    if not labels_file:
        for path in written.glob(".layerkit/*.labels"):
            path.unlink()
    source = TFRecordSource(written)
    first = source.encoded_many(np.arange(len(source)))
    assert source.encoded_many([0, 0, 5]) == [first[0], first[0], first[5]]
    shard = sorted(written.glob("*.tfrecord"))[0]
    with ShardReader(shard) as r:
        payloads = [r.read(i) for i in range(len(r))]
    fields = image_example_fields(payloads[0])
    relabelled = encode_image_example(fields["encoded"], (fields["label"] + 1) % 10, "jpeg", 32, 32)
    raw, frame = shard.read_bytes(), tfrecord.encode_record(payloads[0])
    assert raw.startswith(frame) and len(relabelled) == len(payloads[0])
    shard.write_bytes(tfrecord.encode_record(relabelled) + raw[len(frame):])
    assert source.encoded_many([1]) == [first[1]]  # untouched records read as before
    with pytest.raises(RecordError, match=r"record 0\b"):
        source.encoded_many([0])


@pytest.mark.parametrize("corrupt, why", [
    (lambda p: p.write_bytes(b"not an npy"), "not an .npy array"),
    (lambda p: np.save(p, np.zeros(8, "<i8"), allow_pickle=False), "holds 8 numbers"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 4096), "larger than"),
])
def test_a_broken_labels_file_means_a_scan_with_a_warning(written, corrupt, why):
    shard = sorted(written.glob("*.tfrecord"))[1]
    path = labels_path(shard)
    corrupt(path)
    npy = path.with_name(path.name + ".npy")  # np.save adds .npy to a name without it
    if npy.exists():
        npy.replace(path)
    with pytest.warns(UserWarning, match=why):
        source = TFRecordSource(written)
    assert source.labels_source == ["labels file", "scan", "labels file"]
    with pytest.raises(RecordError, match="invalid labels file"):
        verify_records(written)
    assert source.labels.tolist() == scanned_labels(written)


def scanned_labels(folder):
    for p in folder.glob(".layerkit/*.labels"):
        p.unlink()
    return TFRecordSource(folder).labels.tolist()


def test_rows_pointing_outside_a_record_or_out_of_range_are_refused(written):
    shard = sorted(written.glob("*.tfrecord"))[0]
    with ShardReader(shard) as reader:
        rows, why = load_labels(reader, 10)
        assert why is None and rows.shape == (len(reader), 4)
        assert load_labels(reader, int(rows[:, 0].max()))[1] == (
            f"{labels_path(shard)} holds labels out of range for {int(rows[:, 0].max())} classes")
        bad = rows.copy()
        bad[3, 2] += 10_000
        write_labels(shard, bad, reader.offsets)  # a valid checksum over a bad row
        assert "outside their records" in load_labels(reader, 10)[1]


def edit_rows(shard, edit):
    """Change the rows of `shard`'s labels file in place, its trailer (checksum) left as it was."""
    path = labels_path(shard)
    flat = np.load(path)
    rows = flat[: -TRAILER].reshape(-1, 4).copy()
    edit(rows)
    np.save(path.with_name(path.name + ".npy"), np.concatenate([rows.reshape(-1), flat[-TRAILER:]]), allow_pickle=False)
    path.with_name(path.name + ".npy").replace(path)


@pytest.mark.parametrize("column", [0, 1, 2, 3])
def test_an_edited_row_fails_the_checksum_and_the_shard_is_scanned(written, column):
    truth = TFRecordSource(written).labels.copy()
    shard = sorted(written.glob("*.tfrecord"))[1]
    edit_rows(shard, lambda rows: rows.__setitem__((7, column), (rows[7, column] + 1) % 10 if column == 0 else rows[7, column] - 1))
    with pytest.warns(UserWarning, match="fails its checksum"):
        source = TFRecordSource(written)
    assert source.labels_source == ["labels file", "scan", "labels file"]
    np.testing.assert_array_equal(source.labels, truth)  # the labels used at opening are right
    with pytest.raises(RecordError, match="invalid labels file: .*fails its checksum"):
        verify_records(written)


def test_a_labels_file_of_another_shard_of_the_same_size_is_refused(written):
    a, _, b = sorted(written.glob("*.tfrecord"))  # 333 records each
    labels_path(a).write_bytes(labels_path(b).read_bytes())
    with pytest.warns(UserWarning, match="was written for a shard of|fails its checksum"):
        TFRecordSource(written)


def test_labels_files_without_a_checksum_are_rescanned(written):
    shard = sorted(written.glob("*.tfrecord"))[0]
    path = labels_path(shard)
    np.save(path.with_name(path.name + ".npy"), np.load(path)[:-TRAILER], allow_pickle=False)
    path.with_name(path.name + ".npy").replace(path)
    with pytest.warns(UserWarning, match="has no checksum"):
        assert TFRecordSource(written).labels_source[0] == "scan"


@pytest.mark.parametrize("column, message", [
    (0, r"record 7, byte offset \d+: the record's label is (\d), records-00000-of-00003.tfrecord.labels says (?!\1)\d"),
    (1, r"record 7, byte offset \d+: .*labels places the image at bytes \d+\.\.\d+ of the payload; the record's \d+-byte image lies at"),
    (2, r"record 7, byte offset \d+: .*labels places the image at bytes"),
])
def test_a_forged_row_with_a_valid_checksum_is_caught_at_the_read_never_served(written, column, message):
    """Even a labels file rewritten with a matching checksum is no authority: each read parses
    the record and compares label and image extent with the row."""
    from layerkit.data.pipeline import Pipeline

    shard = sorted(written.glob("*.tfrecord"))[0]
    with ShardReader(shard) as reader:
        rows, _ = load_labels(reader, 10)
        rows = rows.copy()
        if column == 0:  # swap two labels: dataset.json's class counts still agree
            k = int(np.flatnonzero(rows[:, 0] != rows[7, 0])[0])
            rows[[7, k], 0] = rows[[k, 7], 0]
        else:
            rows[7, column] -= 1
        write_labels(shard, rows, reader.offsets)
    source = TFRecordSource(written)
    assert source.labels_source[0] == "labels file"
    source.encoded_many([8, 9])
    with pytest.raises(RecordError, match=message):
        source.encoded_many([7])
    with pytest.raises(RecordError, match=r"records-00000-of-00003.tfrecord, record \d+, .*the labels file is wrong"):
        list(Pipeline(source, batch_size=50, shuffle=False, cache_decoded=False, prefetch=0))
    with pytest.raises(RecordError, match=["label", "image start", "image size"][column] + r" column: the record has"):
        verify_records(written)


def test_shards_return_the_stored_crc_with_each_payload(written):
    shards = Shards(written)
    payloads, crcs = shards.read_many([5, 0], with_crc=True)
    assert payloads == shards.read_many([5, 0]) and crcs.dtype == np.int64
    assert [tfrecord.masked_crc32c(p) for p in payloads] == crcs.tolist()


def test_index_gives_foreign_shards_labels_files(written, capsys):
    from layerkit import cli

    for p in list(written.glob(".layerkit/*.labels")) + list(written.glob(".layerkit/*.index")) + [written / "dataset.json"]:
        p.unlink()  # as TensorFlow leaves shards: no index, no labels, no dataset.json
    scanned = TFRecordSource(written)
    assert scanned.labels_source == ["scan"] * 3
    assert cli.main(["records", "index", str(written)]) == 0
    assert "indexed 1000 records in 3 shards" in capsys.readouterr().out
    indexed = TFRecordSource(written)
    assert indexed.labels_source == ["labels file"] * 3
    np.testing.assert_array_equal(indexed.labels, scanned.labels)
    assert indexed.encoded_many([0, 999, 500]) == scanned.encoded_many([0, 999, 500])
    assert all(ShardReader(p).index_source == "index" for p in written.glob("*.tfrecord"))


def test_index_names_the_record_that_is_not_an_image_example(written):
    from layerkit.records import index_records

    shard = sorted(written.glob("*.tfrecord"))[2]
    with ShardReader(shard) as r:
        payloads = [r.read(i) for i in range(len(r))]
    with ShardWriter(shard) as w:
        for p in payloads[:4] + [b"\x0b not an example"] + payloads[5:]:
            w.write(p)
    with pytest.raises(RecordError, match=r"records-00002-of-00003.tfrecord, record 4, byte offset \d+"):
        index_records(written)


def test_open_benchmark_prints_its_ratio(capsys, embedded_pack):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "records_open.py"
    spec = importlib.util.spec_from_file_location("records_open", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(embedded_pack), "--shards", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1000 records in 2 shards" in out and "ratio parse / labels files:" in out
