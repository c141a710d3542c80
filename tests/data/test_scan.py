"""One folder scanner and one shard-name rule, for `records write` and training alike."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from layerkit.data.scan import scan_class_folders
from layerkit.data.sources import FolderSource, open_source
from layerkit.records import write_records
from layerkit.records.example import encode_image_example
from layerkit.records.tfrecord import ShardWriter, is_shard_name


def _png():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, "PNG")
    return buf.getvalue()


def test_one_rule_for_hidden_appledouble_case_and_non_files(tmp_path):
    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / ".git").mkdir()  # hidden: not a class
    for name in ("a.png", "B.PNG", "c.Jpeg"):
        (root / "cats" / name).write_bytes(_png())
    (root / "cats" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork
    (root / "cats" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "cats" / "folder.jpg").mkdir()  # a folder named like an image is no image
    os.mkfifo(root / "cats" / "fifo.png")  # never opened
    (root / "dogs" / "d.webp").write_bytes(_png())
    os.symlink(root / "cats" / "a.png", root / "dogs" / "link.png")  # followed
    found = scan_class_folders(root)
    assert found.classes == ("cats", "dogs")
    assert [p.name for p in found.files] == ["B.PNG", "a.png", "c.Jpeg", "d.webp", "link.png"]
    np.testing.assert_array_equal(found.labels, [0, 0, 0, 1, 1])
    # the pipeline's source and the writer see the same images
    source = open_source(root)
    assert isinstance(source, FolderSource) and source.files == list(found.files)
    os.unlink(root / "cats" / "fifo.png")
    info = write_records(root, tmp_path / "out")
    assert info["counts"] == {"cats": 3, "dogs": 2}


def test_empty_class_folder_is_one_error_everywhere(tmp_path):
    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(_png())
    (root / "empty").mkdir()
    (root / "empty" / "._b.png").write_bytes(b"AppleDouble")  # hidden files do not make a class
    with pytest.raises(ValueError, match="class folder 'empty' holds no images"):
        FolderSource(root)
    with pytest.raises(ValueError, match="class folder 'empty' holds no images"):
        write_records(root, tmp_path / "out")


@pytest.mark.parametrize("name, is_shard", [
    ("train.tfrecord", True), ("train.tfrecords", True), ("flowers00-230.tfrec", True),
    ("train-00000-of-00016", True), ("mnist-train.tfrecord-00000-of-00001", True),
    ("train.tfrecord.index", False), ("train.tfrecord.labels", False), (".train.tfrecord.123-abc.tmp", False),
    ("._train.tfrec", False), ("dataset.json", False), ("notes.txt", False),
])
def test_shard_name_rule(name, is_shard):
    assert is_shard_name(name) is is_shard


def test_tfrec_folder_and_a_named_shard_open(tmp_path):
    with ShardWriter(tmp_path / "flowers00-2.tfrec", index=False) as w:
        for label in (0, 1):
            w.write(encode_image_example(_png(), label, "png", 4, 4))
    assert len(open_source(tmp_path)) == 2
    (tmp_path / "other").mkdir()
    odd = tmp_path / "other" / "shard.bin"
    odd.write_bytes((tmp_path / "flowers00-2.tfrec").read_bytes())
    from layerkit.data.sources import TFRecordSource

    assert len(TFRecordSource(odd)) == 2  # named explicitly: read whatever its name
