"""No image is in two of train, validation and test; the record says where each came from."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from layerkit.data.sources import open_dataset
from layerkit.training import apply_overrides, get_recipe
from layerkit.training.data import load_data, stratified_split

CLASSES = ("cat", "dog", "fox")


def _folder(root, per_class=20, size=16):
    """Class folders of PNGs; every image unique (its id is written into its pixels)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            img[0, 0] = (c, i, 7)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


def _ids(pipe):
    x = pipe.read(np.arange(len(pipe.labels)))
    return {(int(a), int(b)) for a, b in x[:, 0, 0, :2]}


def _config(data, *overrides):
    base = get_recipe("sample", smoke_run=True)
    return apply_overrides(base, [f"data={data}", "train_limit=0", "test_limit=0", "batch_size=4", *overrides])


def test_a_folder_without_test_split_gets_one_carved_out_stratified_and_seeded(tmp_path):
    folder = _folder(tmp_path / "pets")
    data = load_data(_config(folder, "validation=0.2", "test_split=0.25"))
    train, val, test = _ids(data.train), _ids(data.validation), _ids(data.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 60
    assert np.bincount(data.test.labels).tolist() == [5, 5, 5]  # 0.25 of each class
    assert np.bincount(data.validation.labels).tolist() == [3, 3, 3]  # 0.2 of the 15 left
    assert "carved out of" in data.splits["test"]["from"] and data.splits["test"]["images"] == 15
    assert data.validation_name.startswith("validation")
    again = load_data(_config(folder, "validation=0.2", "test_split=0.25"))
    assert _ids(again.test) == test  # seeded
    other = load_data(_config(folder, "validation=0.2", "test_split=0.25", "seed=1"))
    assert _ids(other.test) != test


def test_test_data_given_is_used_whole(tmp_path):
    folder, extra = _folder(tmp_path / "pets"), _folder(tmp_path / "more", per_class=4)
    data = load_data(_config(folder, f"test_data={extra}", "validation=0"))
    assert len(data.test.labels) == 12 and len(data.train.labels) == 60
    assert data.validation is None and data.splits["validation"]["images"] == 0
    assert data.splits["test"]["from"] == f"the test data {extra}"


def test_named_sets_keep_their_test_split_and_validation_comes_from_train():
    data = load_data(_config("sample", "validation=0.1"))
    assert len(data.test.labels) == 1000 and len(data.validation.labels) == 500
    assert len(data.train.labels) == 4500
    assert data.splits["test"]["from"] == "the test split of sample"


def test_opening_the_test_split_of_a_pool_is_refused(tmp_path):
    folder = _folder(tmp_path / "pets", per_class=2)
    with pytest.raises(ValueError, match="no test split.*--test-data"):
        open_dataset(str(folder), "test")


def test_stratified_split_keeps_each_class_on_both_sides():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 1)
    held, kept = stratified_split(labels, 0.1, 0)
    assert sorted(labels[held].tolist()) == [0, 1]  # 1 of 10, 1 of 2, none of a lone image
    assert set(labels[kept]) == {0, 1, 2}
    assert not set(held) & set(kept) and len(held) + len(kept) == 13


def test_own_folder_trains_through_the_cli_and_the_record_says_which_images_each_figure_used(tmp_path):
    folder, out = _folder(tmp_path / "pets"), tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--data", str(folder),
                           "--out", str(out), "batch_size=8", "report=false"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["test_images"] == 6 and results["splits"]["test"]["images"] == 6
    assert "carved out of" in results["splits"]["test"]["from"]
    assert results["splits"]["validation"]["images"] == 6
    assert results.get("best_selected_on", "validation").startswith("validation")
