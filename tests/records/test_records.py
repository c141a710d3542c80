"""write_records / verify_records / records_info and `layerkit records` (layerkit.records)."""

import io
import json
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerkit import cli
from layerkit.data.decode import decode_image
from layerkit.records.example import ImageKeys, encode_example, encode_image_example, image_example_fields
from layerkit.data.npz import load_npz
from layerkit.records.labels import labels_path
from layerkit.records import records_info, verify_records, write_records
from layerkit.records.tfrecord import RecordError, Shards, ShardWriter, index_path

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10" / "test.npz"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/cifar10/test.npz not present")


def run_cli(*argv, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ["records"])  # only this command's module is under test
    return cli.main([str(a) for a in argv])


def save_pack(path, blobs, labels, classes):
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(path, jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets,
             labels=np.asarray(labels, np.uint8), classes=np.asarray(classes))
    return path


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory):
    """200 real CIFAR-10 JPEGs, 20 per class (every 50th image of test.npz)."""
    if not SHARED.exists():
        pytest.skip("../shared/data/cifar10/test.npz not present")
    full = load_npz(SHARED)
    pick = range(0, len(full), 50)
    path = tmp_path_factory.mktemp("pack") / "small.npz"
    return save_pack(path, [full.encoded(i) for i in pick], full.labels[list(pick)], full.classes)


def jpeg(mode, size=(12, 10), seed=0, fmt="JPEG"):
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "CMYK": 4, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode if mode != "CMYK" else None)
    if mode == "CMYK":
        img = Image.frombytes("CMYK", size, arr.tobytes())
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def read_back(out):
    """[(encoded, label)] of every record, in shard order."""
    keys = ImageKeys(**json.loads((Path(out) / "dataset.json").read_text())["keys"])
    with Shards(out) as s:
        return [(f["encoded"], f["label"], f) for f in (image_example_fields(p, keys) for p in s)]


def shard_files(out):
    return sorted(Path(out).glob("*.tfrecord"))


# === Round trip ===


def test_npz_round_trip_every_record_once(small_pack, tmp_path):
    src = load_npz(small_pack)
    info = write_records(small_pack, tmp_path / "out", shards=4, seed=1, progress=False)
    got = read_back(tmp_path / "out")
    want = Counter((src.encoded(i), int(src.labels[i])) for i in range(len(src)))
    assert Counter((e, lab) for e, lab, _ in got) == want  # identical bytes and labels, each exactly once
    assert len(got) == 200 and len({e for e, _, _ in got}) == 200
    assert [s["records"] for s in info["shards"]] == [50, 50, 50, 50]
    assert info["counts"] == {c: 20 for c in src.classes}
    assert info["image_sizes"] == {"32x32": 200}
    assert all(f["format"] == b"jpeg" and (f["height"], f["width"]) == (32, 32) for _, _, f in got)
    order = [e for e, _, _ in got]
    assert order != [src.encoded(i) for i in range(len(src))]  # shuffled across shards
    labels_in_first_shard = {lab for _, lab, _ in got[:50]}
    assert len(labels_in_first_shard) >= 8  # not one class per shard
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [".layerkit", "dataset.json"] + [f"records-0000{k}-of-00004.tfrecord" for k in range(4)]
    # the side files in .layerkit/, where no glob of TensorFlow's (records-*, *.tfrec*) matches them
    assert sorted(p.name for p in (tmp_path / "out" / ".layerkit").iterdir()) == sorted(
        f"records-0000{k}-of-00004.tfrecord{s}" for k in range(4) for s in (".index", ".labels"))
    assert verify_records(tmp_path / "out") == {"records": 200, "shards": 4, "classes": 10, "keys": "default"}


def test_seed_decides_the_order(small_pack, tmp_path):
    write_records(small_pack, tmp_path / "a", shards=2, seed=5)
    write_records(small_pack, tmp_path / "b", shards=2, seed=5)
    write_records(small_pack, tmp_path / "c", shards=2, seed=6)
    a, b, c = ([e for e, _, _ in read_back(tmp_path / d)] for d in "abc")
    assert a == b and a != c and sorted(a) == sorted(c)


def test_balanced_shards_uneven_count(small_pack, tmp_path):
    info = write_records(small_pack, tmp_path / "o", shards=7)
    sizes = [s["records"] for s in info["shards"]]
    assert sum(sizes) == 200 and max(sizes) - min(sizes) <= 1


def test_records_info(small_pack, tmp_path):
    write_records(small_pack, tmp_path / "o", shards=3)
    info = records_info(tmp_path / "o")
    assert info["records"] == 200
    assert set(info["classes"].values()) == {20} and len(info["classes"]) == 10
    assert info["image_sizes"] == {"32x32": 200} and info["formats"] == {"jpeg": 200}
    pack = load_npz(small_pack)
    assert info["bytes"]["images"] == len(pack.data)
    assert info["bytes"]["shards"] == sum(p.stat().st_size for p in shard_files(tmp_path / "o"))


def test_refuses_to_overwrite_unless_asked(small_pack, tmp_path):
    write_records(small_pack, tmp_path / "o", shards=2)
    with pytest.raises(ValueError, match="already holds records.*overwrite=True"):
        write_records(small_pack, tmp_path / "o", shards=2)
    write_records(small_pack, tmp_path / "o", shards=3, overwrite=True)
    assert len(shard_files(tmp_path / "o")) == 3 and len(read_back(tmp_path / "o")) == 200


def test_bad_shard_counts(small_pack, tmp_path):
    with pytest.raises(ValueError, match="shards must be a positive int, got 0"):
        write_records(small_pack, tmp_path / "o", shards=0)
    with pytest.raises(ValueError, match="shards=201 exceeds the 200 images"):
        write_records(small_pack, tmp_path / "o", shards=201)


def test_progress_quiet_when_not_a_tty(small_pack, tmp_path, capsys):
    write_records(small_pack, tmp_path / "o", shards=2)
    assert capsys.readouterr().err == ""
    write_records(small_pack, tmp_path / "p", shards=2, progress=True)
    assert "200/200" in capsys.readouterr().err


# === Folder of class subfolders ===


def make_tree(root, spec):
    for cls, files in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (root / cls / name).write_bytes(data)
    return root


def test_folder_keeps_original_bytes_and_converts_at_decode(tmp_path):
    files = {
        "cats": {"a.jpg": jpeg("RGB", seed=1), "gray.JPG": jpeg("L", seed=2), "cmyk.jpeg": jpeg("CMYK", seed=3)},
        "dogs": {"b.png": jpeg("RGBA", (7, 9), seed=4, fmt="PNG"), "notes.txt": b"not an image", ".hidden.jpg": b"x"},
    }
    root = make_tree(tmp_path / "src", files)
    info = write_records(root, tmp_path / "o", shards=2)
    assert info["classes"] == ["cats", "dogs"] and info["counts"] == {"cats": 3, "dogs": 1}
    got = {e: (lab, f) for e, lab, f in read_back(tmp_path / "o")}
    for cls, label in (("cats", 0), ("dogs", 1)):
        for name, data in files[cls].items():
            if name.endswith(("jpg", "JPG", "jpeg", "png")) and not name.startswith("."):
                assert got[data][0] == label  # the file's exact bytes, no re-encode
    gray = decode_image(files["cats"]["gray.JPG"])
    cmyk = decode_image(files["cats"]["cmyk.jpeg"])
    assert gray.shape == (10, 12, 3) and cmyk.shape == (10, 12, 3)
    assert got[files["dogs"]["b.png"]][1]["format"] == b"png"
    assert (got[files["dogs"]["b.png"]][1]["height"], got[files["dogs"]["b.png"]][1]["width"]) == (9, 7)
    assert verify_records(tmp_path / "o")["records"] == 4


def test_empty_folder(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match=r"no class subfolders found; expected .*/<class name>/<image files> \(the folder is empty\)"):
        write_records(tmp_path / "src", tmp_path / "o")
    (tmp_path / "src" / "loose.jpg").write_bytes(jpeg("RGB"))
    with pytest.raises(ValueError, match="found 1 loose files such as 'loose.jpg'"):
        write_records(tmp_path / "src", tmp_path / "o")


def test_class_folder_without_images(tmp_path):
    root = make_tree(tmp_path / "src", {"cats": {"a.jpg": jpeg("RGB")}, "dogs": {"readme.txt": b"hi"}})
    with pytest.raises(ValueError, match=r"src/dogs: class folder holds no images"):
        write_records(root, tmp_path / "o")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_image_that_does_not_decode(tmp_path):
    root = make_tree(tmp_path / "src", {"cats": {"a.jpg": jpeg("RGB"), "broken.jpg": b"\xff\xd8\xff\xe0 truncated"}})
    with pytest.raises(ValueError, match=r"1 of 2 images cannot be used:\n  .*broken\.jpg: not a decodable image"):
        write_records(root, tmp_path / "o", shards=1)
    assert list((tmp_path / "o").glob("*.tfrecord")) == []  # no shard that looks whole
    assert not (tmp_path / "o" / "dataset.json").exists()


def test_failure_midway_leaves_no_shards(tmp_path, monkeypatch):
    from layerkit.records import writer

    files = {f"{i:03d}.jpg": jpeg("RGB", seed=i) for i in range(40)}
    files["zzz.jpg"] = b"\xff\xd8 not really"
    root = make_tree(tmp_path / "src", {"cats": files})
    with pytest.raises(ValueError, match=r"zzz\.jpg: not an image"):
        write_records(root, tmp_path / "o", shards=8, seed=0)  # refused before any shard is written
    assert not (tmp_path / "o").exists()
    (root / "cats" / "zzz.jpg").unlink()
    calls = []

    def failing(*args, **kwargs):  # a failure in the write pass itself, in shard 6 of 8
        calls.append(1)
        if len(calls) == 31:
            raise OSError("disk full")
        return encode_image_example(*args, **kwargs)

    monkeypatch.setattr(writer, "encode_image_example", failing)
    (tmp_path / "o").mkdir()
    with pytest.raises(OSError, match="disk full"):
        write_records(root, tmp_path / "o", shards=8, seed=0)
    assert list((tmp_path / "o").iterdir()) == []  # shards 0-5 were finished, then removed


def test_label_out_of_range_in_source(tmp_path):
    blobs = [jpeg("RGB", seed=i) for i in range(3)]
    pack = save_pack(tmp_path / "p.npz", blobs, [0, 1, 2], ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\) for 2 classes; found 0\.\.2"):
        write_records(pack, tmp_path / "o")


def test_unknown_source(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="unknown image source"):
        write_records(tmp_path / "x.csv", tmp_path / "o")
    with pytest.raises(FileNotFoundError):
        write_records(tmp_path / "missing", tmp_path / "o")


# === CIFAR-10 python batches ===


def cifar_batch(n, seed, py2_names=True):
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"batch", b"labels": rng.integers(0, 10, n).tolist(),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f.png"] * n}
    data = pickle.dumps(batch, protocol=3)  # GLOBAL opcodes, as in the original Python 2 files
    if py2_names:
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in data
    return batch, data


def make_cifar(root, n=6):
    root.mkdir(parents=True)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch, data = cifar_batch(n, k)
        (root / name).write_bytes(data)
        batches[name] = batch
    return batches


def test_cifar_batches_folder_and_tarball(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    batches = make_cifar(root)
    info = write_records(root, tmp_path / "o", shards=3)
    assert info["records"] == 30 and info["classes"][0] == "airplane" and info["image_sizes"] == {"32x32": 30}
    want = Counter()
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        b = batches[name]
        for row, lab in zip(b[b"data"], b[b"labels"]):
            want[(row.reshape(3, 32, 32).transpose(1, 2, 0).tobytes(), lab)] += 1
    got = read_back(tmp_path / "o")
    assert all(f["format"] == b"png" for _, _, f in got)
    assert Counter((decode_image(e).tobytes(), lab) for e, lab, _ in got) == want  # PNG: lossless pixels
    verify_records(tmp_path / "o")

    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    info = write_records(tgz, tmp_path / "t", split="test")
    test = batches["test_batch"]
    assert info["records"] == 6
    assert sorted(lab for _, lab, _ in read_back(tmp_path / "t")) == sorted(test[b"labels"])


def test_cifar_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch: not a CIFAR-10 python batch: UnpicklingError: refusing to load global (posix|os|nt)\.system"):
        write_records(root, tmp_path / "o", split="test")
    assert not marker.exists()


def test_cifar_object_arrays_and_wrong_shapes_refused(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.array([1, "x"], object), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="refusing object dtype"):
        write_records(root, tmp_path / "o", split="test")
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match=r"b'data' must be a uint8 array of shape \(n, 3072\), got uint8 \(2, 100\)"):
        write_records(root, tmp_path / "o", split="test")
    with pytest.raises(ValueError, match=r"batches \['data_batch_1'.*missing for split 'train'"):
        write_records(root, tmp_path / "o", split="train")


def test_cifar_label_out_of_range(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}
    (root / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch image 1: label 10 is out of range for 10 classes \(expected 0\.\.9; 1 such images\)"):
        write_records(root, tmp_path / "o", split="test")


# === verify: the first fault, named ===


@pytest.fixture
def written(small_pack, tmp_path):
    out = tmp_path / "o"
    write_records(small_pack, out, shards=4)
    return out


def offsets_of(shard):
    return np.load(index_path(shard), allow_pickle=False)


def test_flipped_byte_names_shard_record_offset(written):
    shard = shard_files(written)[2]
    offsets = offsets_of(shard)
    raw = bytearray(shard.read_bytes())
    raw[int(offsets[7]) + 40] ^= 0xFF  # inside record 7's payload
    shard.write_bytes(bytes(raw))
    with pytest.raises(RecordError, match=rf"{shard.name}, record 7, byte offset {offsets[7]}: payload .* fails its CRC") as e:
        verify_records(written)
    assert e.value.path == shard and e.value.index == 7 and e.value.offset == offsets[7]


def test_truncated_shard_named(written):
    shard = shard_files(written)[1]
    offsets = offsets_of(shard)
    shard.write_bytes(shard.read_bytes()[: int(offsets[30]) + 20])
    with pytest.raises(RecordError, match=rf"{shard.name}, record 30, byte offset {offsets[30]}: truncated shard"):
        verify_records(written)


def rewrite_shard(shard, payloads):
    """The shard as another writer (TF's, say) would leave it: no labels file."""
    labels_path(shard).unlink(missing_ok=True)
    with ShardWriter(shard) as w:
        for p in payloads:
            w.write(p)
    meta = shard.parent / "dataset.json"  # its bytes field too: this is about the records, not their sizes
    info = json.loads(meta.read_text())
    for entry in info["shards"]:
        if entry["file"] == shard.name:
            entry["bytes"] = shard.stat().st_size
    meta.write_text(json.dumps(info))


@pytest.mark.parametrize(
    "bad, message",
    [
        (b"\x0b not an example", "unsupported wire type"),
        (encode_example({"other": [b"x"]}), "no image feature 'image/encoded'"),
        (encode_image_example(b"\xff\xd8\xff\xe0 junk", 1, "jpeg", 32, 32), "DecodeError|not a decodable image|decode"),
        (encode_image_example(jpeg("RGB", (32, 32)), 12, "jpeg", 32, 32), "label 12 (is )?out of range for 10 classes"),
        (encode_image_example(jpeg("RGB", (32, 32)), 1, "jpeg", 31, 32), r"height x width \(31, 32\)"),
        # a readable image and label, but another feature is malformed: still a bad record
        (encode_image_example(jpeg("RGB", (32, 32)), 1, "jpeg", 32, 32)
         + bytes.fromhex("0a10" "0a0e" "0a05") + b"extra" + bytes.fromhex("1205" "1203" "0a01") + b"a",
         "packed FloatList of 1 bytes"),
    ],
)
def test_bad_record_named(written, bad, message):
    """A well-framed record whose payload is wrong: verify names its shard, index and offset."""
    shard = shard_files(written)[3]
    payloads = list(Shards([shard]))
    payloads[11] = bad
    rewrite_shard(shard, payloads)
    offset = offsets_of(shard)[11]
    with pytest.raises(RecordError, match=rf"{shard.name}, record 11, byte offset {offset}: .*({message})"):
        verify_records(written)


def test_grayscale_and_cmyk_records_verify(written):
    """Grayscale and CMYK JPEGs decode to RGB, so records holding them verify."""
    shard = shard_files(written)[0]
    payloads = list(Shards([shard]))
    for i, mode in ((0, "L"), (1, "CMYK")):
        label = image_example_fields(payloads[i])["label"]  # keep the class counts of dataset.json
        payloads[i] = encode_image_example(jpeg(mode, (32, 32)), label, "jpeg", 32, 32)
    rewrite_shard(shard, payloads)
    assert verify_records(written) == {"records": 200, "shards": 4, "classes": 10, "keys": "default"}


def test_missing_index_or_shard(written):
    shard = shard_files(written)[0]
    index_path(shard).unlink()
    with pytest.raises(RecordError, match=rf"{shard.name}: missing index: .*{shard.name}.index"):
        verify_records(written)
    shard.unlink()
    with pytest.raises(RecordError, match="shard listed in dataset.json is missing"):
        verify_records(written)


def test_not_a_records_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no shards"):  # no dataset.json and no shard
        verify_records(tmp_path)
    (tmp_path / "dataset.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        verify_records(tmp_path)


# === CLI ===


def test_cli_write_verify_info_and_a_flipped_byte(small_pack, tmp_path, capsys, monkeypatch):
    out = tmp_path / "OUT"
    assert run_cli("records", "write", small_pack, out, "--shards", "4", monkeypatch=monkeypatch) == 0
    assert "wrote 200 records of 10 classes in 4 shards" in capsys.readouterr().out
    assert run_cli("records", "verify", out, monkeypatch=monkeypatch) == 0
    assert capsys.readouterr().out.strip() == "ok: 200 records in 4 shards, 10 classes (keys: default)"
    assert run_cli("records", "info", out, monkeypatch=monkeypatch) == 0
    text = capsys.readouterr().out
    assert "records: 200 in 4 shards" in text and "airplane    20" in text and "32x32: 200" in text

    shard = shard_files(out)[1]
    offsets = offsets_of(shard)
    raw = bytearray(shard.read_bytes())
    raw[int(offsets[3]) + 100] ^= 0x01
    shard.write_bytes(bytes(raw))
    assert run_cli("records", "verify", out, monkeypatch=monkeypatch) == 1
    err = capsys.readouterr().err
    assert f"FAILED: {shard}, record 3, byte offset {offsets[3]}" in err


def test_cli_reports_bad_input(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert run_cli("records", "write", tmp_path / "empty", tmp_path / "o", monkeypatch=monkeypatch) == 2
    assert "layerkit records: error:" in capsys.readouterr().err


@needs_shared
def test_cli_full_cifar10_test_npz(tmp_path, capsys, monkeypatch):
    """The whole 10,000-image test.npz: write 4 shards, verify (measured ~3 s on CPU-2)."""
    out = tmp_path / "OUT"
    assert run_cli("records", "write", SHARED, out, "--shards", "4", monkeypatch=monkeypatch) == 0
    assert run_cli("records", "verify", out, monkeypatch=monkeypatch) == 0
    assert "ok: 10000 records in 4 shards" in capsys.readouterr().out
    assert [s["records"] for s in json.loads((out / "dataset.json").read_text())["shards"]] == [2500] * 4
