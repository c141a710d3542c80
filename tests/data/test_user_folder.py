"""A user's own folder (fixtures/user_folder: mixed sizes and modes, Mac leftovers, a zero-byte and a
truncated JPEG) trains with one command; `records write` gives the same verdicts as training."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from layerkit import cli
from layerkit.data.check import BadImagesError, apply_policy, check_images
from layerkit.data.decode import DecodeError
from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import FolderSource, Subset, open_source
from layerkit.records import verify_records, write_records

FOLDER = Path(__file__).parent / "fixtures" / "user_folder"
BAD = {"cats/empty.jpg": "empty: 0 bytes", "dogs/truncated.jpg": "not a decodable image"}


def test_scan_skips_mac_leftovers_and_checks_every_image():
    source = open_source(FOLDER)
    names = [str(p.relative_to(FOLDER)) for p in source.files]
    assert "cats/._a.jpg" not in names and "cats/.DS_Store" not in names and "dogs/notes.txt" not in names
    assert len(names) == 12 and "dogs/J.JPG" in names
    check = check_images(source)
    assert {str(Path(where).relative_to(FOLDER)): why.split(" (")[0].split(":")[0] for _, where, why in check.bad} \
        == {k: v.split(":")[0] for k, v in BAD.items()}
    good = check.sizes[check.good()]
    assert len(good) == 10 and len({tuple(s) for s in good.tolist()}) == 7  # seven sizes among ten images


def test_error_names_every_bad_file_at_once():
    with pytest.raises(BadImagesError) as err:
        apply_policy(open_source(FOLDER), "error", image_size=(32, 32))
    message = str(err.value)
    assert "2 of 12 images cannot be used" in message and "on_bad_image=skip" in message
    for name, why in BAD.items():
        assert f"{FOLDER / name}: {why}" in message
    assert "BytesIO" not in message


def test_mixed_sizes_say_the_cli_key_a_file_and_height_by_width():
    with pytest.raises(ValueError) as err:
        apply_policy(open_source(FOLDER), "skip")
    message = str(err.value)
    assert "differ in size (height x width)" in message and "image_size=N" in message
    assert f"9x7: 1 image, e.g. {FOLDER / 'cats' / 'b_rgba.png'}" in message  # b_rgba.png is 7 wide, 9 high


def test_pipeline_without_the_check_names_the_file_and_size():
    source = FolderSource(FOLDER)
    part = Subset(source, [0, 1])  # a.jpg 10x12, b_rgba.png 9x7
    with pytest.raises(DecodeError, match=rf"{FOLDER / 'cats' / 'b_rgba.png'}: image is 9x7 \(height x width\), "
                                          r"the others 10x12: images of different sizes need image_size=N"):
        Pipeline(part, 2, shuffle=False, cache_decoded=False, prefetch=0)[0]


def test_skip_keeps_the_rest_decoded_to_rgb():
    source, check = apply_policy(open_source(FOLDER), "skip", image_size=(16, 16))
    assert len(source) == 10 and len(check.bad) == 2
    images, labels = Pipeline(source, 10, shuffle=False, image_size=(16, 16), prefetch=0)[0]
    assert images.shape == (10, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0] * 5 + [1] * 5)


def test_records_write_gives_the_same_verdicts_and_leaves_nothing_when_it_refuses(tmp_path):
    out = tmp_path / "new" / "records"
    with pytest.raises(BadImagesError) as err:
        write_records(FOLDER, out)
    assert [where for _, where, _ in err.value.bad] == [str(FOLDER / name) for name in BAD]
    assert not (tmp_path / "new").exists()  # no folder, no shard, no dataset.json
    info = write_records(FOLDER, out, on_bad_image="skip")
    assert info["records"] == 10 and [s["image"] for s in info["skipped"]] == [str(FOLDER / n) for n in BAD]
    assert verify_records(out)["records"] == 10
    assert json.loads((out / "dataset.json").read_text())["image_sizes"]["9x7"] == 1


def test_records_write_refusing_in_an_existing_folder_keeps_it(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(BadImagesError):
        write_records(FOLDER, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


def test_train_one_command_error_then_skip(tmp_path, capsys):
    args = ["train", "--smoke", "--data", str(FOLDER), "--batch-size", "2"]
    assert cli.main([*args, "--out", str(tmp_path / "a"), "image_size=32", "report=false"]) == 2
    err = capsys.readouterr().err
    assert all(f"{FOLDER / name}: {why}" in err for name, why in BAD.items()) and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    assert cli.main([*args, "--out", str(tmp_path / "b"), "image_size=32", "report=false", "on_bad_image=skip"]) == 0, \
        capsys.readouterr().err
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["splits"]["skipped"]["images"] == 2
    assert results["splits"]["train"]["images"] + results["splits"]["validation"]["images"] \
        + results["splits"]["test"]["images"] == 10


def test_a_copy_with_the_bad_files_removed_needs_no_policy(tmp_path):
    folder = Path(shutil.copytree(FOLDER, tmp_path / "photos"))
    for name in BAD:
        (folder / name).unlink()
    source, check = apply_policy(open_source(folder), "error", image_size=(8, 8))
    assert len(source) == 10 and not check.bad
