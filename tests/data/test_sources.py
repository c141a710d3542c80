import io
import json

import numpy as np
import pytest
from PIL import Image

from layerkit.data import embedded
from layerkit.data.decode import decode_image
from layerkit.data.sources import (ArraySource, FolderSource, NpzSource, Subset, open_dataset,
                                    open_source)


def _jpeg(color, size=(8, 8)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_sample_is_the_embedded_data():
    source = open_dataset("sample", "test")
    pack = embedded.load("test")
    assert len(source) == 1000 and source.classes == pack.classes
    np.testing.assert_array_equal(source.labels, pack.labels)
    assert source.encoded_many([3, 0]) == [pack.encoded(3), pack.encoded(0)]


def test_named_set_found_under_data_dir(tmp_path):
    pack = embedded.load("test")
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "test.npz", jpeg=pack.data, offsets=pack.offsets,
             labels=pack.labels.astype(np.uint8), classes=np.array(pack.classes))
    source = open_dataset("cifar10", "test", data_dir=tmp_path)
    assert isinstance(source, NpzSource) and len(source) == 1000
    assert source.encoded_many([7]) == [pack.encoded(7)]


def test_missing_named_set_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        open_dataset("flowers", data_dir=tmp_path / "given")
    message = str(err.value)
    for place in ("given", "env", ".keras", "shared"):
        assert place in message
    assert "never downloads" in message and "flowers/train.npz" in message


def test_unknown_name_and_bad_split_are_value_errors():
    with pytest.raises(ValueError, match="Unknown data set 'imagenet'"):
        open_dataset("imagenet")
    with pytest.raises(ValueError, match="split must be"):
        open_dataset("sample", split="val")


def test_folder_source_labels_from_sorted_subfolders(tmp_path):
    for name, color in (("cat", "red"), ("ant", "blue")):
        (tmp_path / name).mkdir()
        for k in range(2):
            (tmp_path / name / f"{k}.jpg").write_bytes(_jpeg(color))
    source = open_source(tmp_path)
    assert isinstance(source, FolderSource)
    assert source.classes == ("ant", "cat")
    np.testing.assert_array_equal(source.labels, [0, 0, 1, 1])
    blue = decode_image(source.encoded_many([0])[0])
    assert blue[..., 2].mean() > 200 and blue[..., 0].mean() < 50


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="/empty_class: class folder holds no images"):
        FolderSource(tmp_path)


def test_array_source_checks_rank_dtype_and_labels():
    images = np.zeros((4, 8, 8, 3), np.uint8)
    source = ArraySource(images, [0, 1, 2, 1])
    assert source.classes == ("0", "1", "2") and source.image_shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"shape \(4, 8, 8\)"):
        ArraySource(np.zeros((4, 8, 8), np.uint8), [0] * 4)
    with pytest.raises(ValueError, match="float32"):
        ArraySource(images.astype("float32"), [0] * 4)
    with pytest.raises(ValueError, match="4 integers"):
        ArraySource(images, [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ArraySource(images, [0, 1, 2, 1], classes=("a", "b"))


def test_tfrecord_folder(tmp_path):
    example = pytest.importorskip("layerkit.records.example")
    tfrecord = pytest.importorskip("layerkit.records.tfrecord")
    blobs = [_jpeg(c) for c in ("red", "green", "blue")]
    labels = [2, 0, 1]
    with tfrecord.ShardWriter(tmp_path / "s-00000-of-00002.tfrecord") as w:
        w.write(example.encode_image_example(blobs[0], labels[0], "jpeg", 8, 8))
    with tfrecord.ShardWriter(tmp_path / "s-00001-of-00002.tfrecord") as w:
        for b, y in zip(blobs[1:], labels[1:]):
            w.write(example.encode_image_example(b, y, "jpeg", 8, 8))
    (tmp_path / "dataset.json").write_text(json.dumps({
        "classes": ["x", "y", "z"],
        "shards": [{"file": "s-00000-of-00002.tfrecord", "records": 1},
                   {"file": "s-00001-of-00002.tfrecord", "records": 2}],
        "keys": {"encoded": "image/encoded", "label": "image/class/label"}}))
    source = open_source(tmp_path)
    assert source.classes == ("x", "y", "z")
    np.testing.assert_array_equal(source.labels, labels)
    assert source.encoded_many([2, 0]) == [blobs[2], blobs[0]]


def test_subset_reads_through_to_its_source():
    source = open_dataset("sample", "test")
    part = Subset(source, [5, 2])
    assert len(part) == 2 and part.classes == source.classes
    np.testing.assert_array_equal(part.labels, source.labels[[5, 2]])
    assert part.encoded_many([1]) == source.encoded_many([2])
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        Subset(source, [1000])
