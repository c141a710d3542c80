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
    (root / "dogs" / "d.webp").write_bytes(_png())
    os.symlink(root / "cats" / "a.png", root / "dogs" / "link.png")  # followed
    found = scan_class_folders(root)
    assert found.classes == ("cats", "dogs")
    assert [p.name for p in found.files] == ["B.PNG", "a.png", "c.Jpeg", "d.webp", "link.png"]
    np.testing.assert_array_equal(found.labels, [0, 0, 0, 1, 1])
    # the pipeline's source and the writer see the same images
    source = open_source(root)
    assert isinstance(source, FolderSource) and source.files == list(found.files)
    info = write_records(root, tmp_path / "out")
    assert info["counts"] == {"cats": 3, "dogs": 2}


def _hostile(root):
    """A class folder with every kind of entry named like an image that is no image file."""
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(_png())
    (root / "cats" / "b.png").write_bytes(_png())
    os.symlink("loop.jpg", root / "cats" / "loop.jpg")  # a link to itself
    os.symlink("/dev/zero", root / "cats" / "zero.jpg")  # endless bytes
    os.mkfifo(root / "cats" / "fifo.png")  # would block a plain open
    (root / "cats" / "x.jpg").mkdir()  # a folder named like an image
    os.symlink(root / "nowhere.png", root / "cats" / "dangling.png")
    return {"loop.jpg": "Too many levels of symbolic links", "zero.jpg": "not a regular file",
            "fifo.png": "found a FIFO", "x.jpg": "found a folder", "dangling.png": "No such file or directory"}


def test_entries_named_like_images_that_are_no_image_files_are_bad_images_by_name(tmp_path):
    from layerkit.data.check import BadImagesError, apply_policy

    root = tmp_path / "src"
    expected = _hostile(root)
    source = open_source(root)  # nothing opened yet: a FIFO or /dev/zero cannot hang the scan
    assert sorted(p.name for p in source.files) == sorted(["a.png", "b.png", *expected])
    with pytest.raises(BadImagesError) as err:  # on_bad_image=error: every one named, with its reason
        apply_policy(source, "error")
    lines = str(err.value).splitlines()
    for name, why in expected.items():
        line = next(line for line in lines if line.strip().startswith(str(root / "cats" / name)))
        assert why in line, (name, line)
    kept, check = apply_policy(source, "skip")  # skip: left out, each listed
    assert len(kept) == 2 and len(check.bad) == len(expected)
    with pytest.raises(BadImagesError):  # records write gives the same verdict
        write_records(root, tmp_path / "out")
    assert write_records(root, tmp_path / "out", on_bad_image="skip")["records"] == 2


def test_a_class_folder_that_is_a_broken_link_is_named_not_dropped(tmp_path):
    from layerkit.data.scan import ClassFolderError

    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(_png())
    os.symlink("loop", root / "loop")  # a class folder that is a link to itself
    os.symlink(tmp_path / "gone", root / "gone")
    with pytest.raises(ClassFolderError) as err:
        FolderSource(root)
    message = str(err.value)
    assert f"{root / 'loop'}: a symbolic link that loops" in message
    assert f"{root / 'gone'}: a symbolic link to {str(tmp_path / 'gone')!r}, which does not exist" in message
    assert err.value.found.classes == ("cats",)  # what the rest of the folder holds
    with pytest.raises(ValueError, match="symbolic link that loops"):
        write_records(root, tmp_path / "out")


def test_empty_class_folder_is_one_error_everywhere(tmp_path):
    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "a.png").write_bytes(_png())
    (root / "empty").mkdir()
    (root / "empty" / "._b.png").write_bytes(b"AppleDouble")  # hidden files do not make a class
    with pytest.raises(ValueError, match=f"{root / 'empty'}: class folder holds no images"):
        FolderSource(root)
    with pytest.raises(ValueError, match=f"{root / 'empty'}: class folder holds no images"):
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
