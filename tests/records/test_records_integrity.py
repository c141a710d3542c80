"""Nothing lost, nothing silently wrong: records folders whose files changed after writing.

Counts in dataset.json against the shards, malformed dataset.json, non-regular files in place
of side files, temporary files of killed writers.
"""

import contextlib
import json
import os
import warnings

import numpy as np
import pytest

from layerkit.records.labels import scan_labels, write_labels
from layerkit.records import index_records, verify_records, write_records
from layerkit.data.sources import TFRecordSource, open_dataset
from layerkit.records.tfrecord import RecordError, ShardReader, index_path, write_index


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


# === Item 4: pixels deeper than 8 bits are scaled or refused, never clipped ===


def _save(array, fmt, path=None):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    if path is not None:
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_to_8_bits(fmt):
    from layerkit.data.decode import decode_image

    values = np.array([[0, 257, 32896], [65535, 1000, 65280]], np.uint16)
    got = decode_image(_save(values, fmt))
    assert got.dtype == np.uint8 and got.shape == (2, 3, 3)
    np.testing.assert_array_equal(got[..., 0], [[0, 1, 128], [255, 4, 254]])
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 0] == got[..., 2]).all()


def test_float_images_in_0_to_1_are_scaled_others_refused():
    from layerkit.data.decode import DecodeError, decode_image

    got = decode_image(_save(np.array([[0.0, 0.5, 1.0]], np.float32), "TIFF"))
    np.testing.assert_array_equal(got[..., 0], [[0, 128, 255]])
    for bad, why in ((np.array([[0.0, 2.5]], np.float32), r"values 0\.\.2\.5; expected 0\.\.1"),
                     (np.array([[0.0, np.nan]], np.float32), "NaN"),
                     (np.array([[-1, 7]], np.int32), "32-bit integer TIFF image .*range is unknown")):
        with pytest.raises(DecodeError, match=why):
            decode_image(_save(bad, "TIFF"))


def test_records_write_and_the_pipeline_keep_16_bit_pixels(tmp_path):
    from layerkit.data.pipeline import Pipeline
    from layerkit.data.sources import FolderSource

    values = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1000).astype(np.uint16)
    for c in ("a", "b"):
        (tmp_path / "src" / c).mkdir(parents=True)
        _save(values, "PNG", tmp_path / "src" / c / "deep.png")
    want = (values.astype(np.int64) * 255 + 32767) // 65535
    write_records(tmp_path / "src", tmp_path / "o")
    for source in (TFRecordSource(tmp_path / "o"), FolderSource(tmp_path / "src")):
        images, _ = Pipeline(source, batch_size=2, shuffle=False, cache_decoded=False, prefetch=0)[0]
        assert images.shape == (2, 8, 8, 3) and images[..., 0].max() == want.max() < 255
        np.testing.assert_array_equal(images[0, ..., 0], want)


# === Item 7: a tiny CIFAR pickle cannot ask for memory it does not hold ===


class _Call:
    """Pickles as a call of `func` with `args` (what a hostile file can write)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _cifar_folder(tmp_path, batch):
    import pickle

    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    return tmp_path / "c"


@pytest.mark.parametrize("batch, why", [
    ({b"data": _Call(np.ndarray, (900_000, 3072), np.dtype(np.uint8)), b"labels": []}, r"refusing numpy.ndarray\(\.\.\.\)"),
    ({b"data": np.zeros((4, 3072), np.uint8), b"labels": _Call(np.ndarray, (4,), np.dtype(np.int64))}, r"refusing numpy.ndarray\(\.\.\.\)"),
    ({b"data": _Call(np._core.multiarray._reconstruct, np.ndarray, (10**9,), b"b"), b"labels": []},
     r"refusing an array of shape \(1000000000,\)"),
    ({b"data": _Call(__import__("codecs").encode, b"ab", "hex"), b"labels": []}, "refusing codecs.encode with encoding 'hex'"),
])
def test_cifar_pickles_cannot_allocate_what_the_file_does_not_hold(tmp_path, batch, why):
    import tracemalloc

    from layerkit.records import write_records as write

    folder = _cifar_folder(tmp_path, batch)
    assert (folder / "test_batch").stat().st_size < 13_000  # asks for up to 2.7 GB
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"test_batch: not a CIFAR-10 python batch: UnpicklingError: {why}"):
            write(folder, tmp_path / "o", split="test")
        assert tracemalloc.get_traced_memory()[1] < 50 * 1024 * 1024
    finally:
        tracemalloc.stop()


def test_real_cifar_pickles_still_load(tmp_path):
    from layerkit.data.cifar import CifarSource

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    source = CifarSource(_cifar_folder(tmp_path, {b"data": data, b"labels": [1, 2, 3]}), "test")
    assert source.labels.tolist() == [1, 2, 3] and len(source) == 3


# === Item 8: bombs, folders and FIFOs named as images or side files ===


def _png_claiming(width, height):
    """A valid 1x1 PNG whose header then claims width x height (Pillow reads only the header)."""
    import struct
    import zlib

    png = bytearray(_save(np.zeros((1, 1, 3), np.uint8), "PNG"))
    ihdr = 8 + 8  # signature, then IHDR's length and type
    png[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    png[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(png[ihdr - 4 : ihdr + 13])))
    return bytes(png)


@pytest.mark.parametrize("size", [(30000, 30000), (12000, 12000)])
def test_a_decompression_bomb_is_a_decode_error_naming_the_file(tmp_path, size):
    from layerkit.data.decode import DecodeError, decode_file, decode_image
    from layerkit.data.pipeline import Pipeline
    from layerkit.data.sources import FolderSource

    bomb = _png_claiming(*size)
    with pytest.raises(DecodeError, match="exceeds 67108864 pixels"):
        decode_image(bomb)
    for c in ("a", "b"):
        (tmp_path / "src" / c).mkdir(parents=True)
        (tmp_path / "src" / c / "ok.png").write_bytes(_save(np.zeros((4, 4, 3), np.uint8), "PNG"))
    (tmp_path / "src" / "b" / "bomb.png").write_bytes(bomb)
    path = tmp_path / "src" / "b" / "bomb.png"
    with pytest.raises(DecodeError, match=rf"{path}: .*exceeds 67108864 pixels"):
        decode_file(path)  # the predict command's reader
    with pytest.raises(ValueError, match=rf"{path}: .*exceeds"):
        write_records(tmp_path / "src", tmp_path / "o")
    with pytest.raises(DecodeError, match=rf"{path}: .*exceeds"):
        Pipeline(FolderSource(tmp_path / "src"), batch_size=3, shuffle=False, cache_decoded=False, prefetch=0)[0]


def _alarm(seconds):
    import signal

    def fail(*_):
        raise TimeoutError("hung")

    signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("suffix", [".index", ".labels"])
def test_a_fifo_in_place_of_a_side_file_never_hangs(written, suffix):
    import signal

    path = shard(written, 1)
    side = path.parent / ".layerkit" / (path.name + suffix)
    side.unlink()
    os.mkfifo(side)
    _alarm(20)
    try:
        with pytest.warns(UserWarning, match=rf"{side.name}: expected .*\(a regular file\), found a FIFO"):
            source = TFRecordSource(written)
        assert len(source) == 1000
        with pytest.raises(RecordError, match=rf"{path.name}: .*found a FIFO"):
            verify_records(written)
        with pytest.warns(UserWarning) if suffix == ".index" else contextlib.nullcontext():
            open_dataset(str(written))
    finally:
        signal.alarm(0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_and_folders_named_as_images_or_dataset_json(written, tmp_path):
    import signal

    from layerkit.data.decode import DecodeError, decode_file
    from layerkit.data.sources import FolderSource

    (written / "dataset.json").unlink()
    os.mkfifo(written / "dataset.json")
    for c in ("a", "b"):
        (tmp_path / "src" / c).mkdir(parents=True)
        _save(np.zeros((4, 4, 3), np.uint8), "PNG", tmp_path / "src" / c / "ok.png")
    (tmp_path / "src" / "a" / "x.jpg").mkdir()
    os.mkfifo(tmp_path / "src" / "b" / "y.jpg")
    _alarm(20)
    try:
        with pytest.raises(RecordError, match=r"dataset.json: expected a dataset.json \(a regular file\), found a FIFO"):
            TFRecordSource(written)
        with pytest.raises(DecodeError, match=r"x.jpg: expected an image file \(a regular file\), found a folder"):
            decode_file(tmp_path / "src" / "a" / "x.jpg")
        with pytest.raises(DecodeError, match=r"y.jpg: expected .*found a FIFO"):
            decode_file(tmp_path / "src" / "b" / "y.jpg")
        # named like images but no image files: bad images, each named, under on_bad_image (issue 18 item 9)
        assert len(FolderSource(tmp_path / "src")) == 4
        with pytest.raises(ValueError, match=r"2 of 4 images cannot be used:\n.*x.jpg: .*found a folder\n.*y.jpg: .*found a FIFO"):
            write_records(tmp_path / "src", tmp_path / "o2")
        assert write_records(tmp_path / "src", tmp_path / "o3", on_bad_image="skip")["records"] == 2
    finally:
        signal.alarm(0)


# === Item 9: errors that say what is wrong ===


def test_an_npz_with_an_object_array_names_the_file(tmp_path):
    from layerkit.data.npz import load_npz

    path = tmp_path / "p.npz"
    np.savez(path, jpeg=np.zeros(3, np.uint8), offsets=np.array([0, 3]), labels=np.array([0]),
             classes=np.array(["a", None], object))
    with pytest.raises(ValueError, match=rf"{path}: cannot read as an image pack: array 'classes': object dtype .*no pickle"):
        load_npz(path)


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_write(tmp_path, embedded_pack):
    import subprocess
    import sys

    out = tmp_path / "o"
    out.mkdir()
    code = ("import os, signal; from layerkit.records.tfrecord import ShardWriter; "
            f"w = ShardWriter({str(out / 'records-00000-of-00001.tfrecord')!r}); w.write(b'x' * 100); "
            "w._file.flush(); os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code], check=False)
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and left[0].startswith(".records-00000-of-00001.tfrecord.") and left[0].endswith(".tmp")
    live = out / f".other.tfrecord.{os.getpid()}-0123456789ab.tmp"  # a writer still running
    live.write_bytes(b"")
    write_records(embedded_pack, out)
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [".layerkit", live.name]  # the side files' folder, and the live writer's file
