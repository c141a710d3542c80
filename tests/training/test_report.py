"""The end-of-run record: a readable report.md, per-class accuracy, the normalised confusion
matrix, confidences on the prediction grids and augmented samples, without training."""

import csv

import keras
import numpy as np
import pytest
from PIL import Image

from layerkit.training import apply_overrides, get_recipe
from layerkit.training import report as reporting
from layerkit.training.data import load_data
from layerkit.training.run import write_record


def _record(out, overrides=()):
    """write_record on the embedded sample's real splits (128 test images: every class), with
    made-up test probabilities."""
    config = apply_overrides(get_recipe("sample", smoke_run=True), ["test_limit=128", *overrides])
    data = load_data(config)
    labels = data.test.labels
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(labels), len(data.classes)))
    logits[np.arange(len(labels)), labels] += 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    model = keras.Sequential([keras.Input(data.image_shape), keras.layers.Flatten(),
                              keras.layers.Dense(len(data.classes))])
    history = {"epoch": [1.0, 2.0], "accuracy": [0.3, 0.4], "val_accuracy": [0.3, 0.35],
               "loss": [2.0, 1.8], "val_loss": [2.1, 1.9], "lr": [1e-3, 2e-3]}
    results = {"splits": data.splits, "test_images": len(labels),
               "test_accuracy_final": float(np.mean(probs.argmax(-1) == labels)),
               "test_loss_final": 1.23456, "best_epoch": 2, "epochs": 2,
               "train_seconds_this_session": 1546.9, "parameters": 1234567,
               "mean_images_per_sec": 4321.6, "a_new_key": 0.5}
    write_record(config, out, model, data, probs, history, results)
    return config, data, probs


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("record")
    config, data, probs = _record(out)
    return out, config, data, probs


def test_report_labels_every_number_with_units(record):
    out, *_ = record
    report = (out / "report.md").read_text()
    assert "train_seconds_this_session" not in report and "test_accuracy_final" not in report
    assert "| training time, this session | 25 min 47 s |" in report
    assert "| parameters | 1,234,567 |" in report
    assert "| mean training speed | 4,322 images/s |" in report
    assert "| test loss (plain cross-entropy), end-of-training weights | 1.2346 |" in report
    assert "| best epoch (1-based) | 2 |" in report
    assert "| a_new_key | 0.5000 |" in report  # unknown keys are kept under their own name
    accuracy = [line for line in report.splitlines() if line.startswith("| test accuracy, end-of-training")]
    assert len(accuracy) == 1 and accuracy[0].endswith("% |")
    assert "'images'" not in report and '{"train"' not in report  # the splits dict is not dumped raw


def test_report_data_section_lists_each_split(record):
    out, _, data, _ = record
    report = (out / "report.md").read_text()
    section = report.split("## Data", 1)[1].split("\n## ", 1)[0]
    for name in ("train", "validation", "test"):
        split = data.splits[name]
        assert f"| {name} | {split['images']:,} | {split['from']} |" in section
    assert data.splits["test"]["images"] == 128


def test_report_says_which_losses_include_label_smoothing(record):
    out, config, *_ = record
    assert config.label_smoothing == 0.2
    report = (out / "report.md").read_text()
    assert "validation loss" in report and "include label smoothing 0.2" in report
    assert "test loss in the table is plain cross-entropy" in report


def test_loss_note_without_smoothing_or_with_l2():
    plain = apply_overrides(get_recipe("sample"), ["label_smoothing=0", "l2=0"])
    assert "all plain cross-entropy" in reporting.loss_note(plain)
    l2 = apply_overrides(get_recipe("sample"), ["label_smoothing=0", "l2=0.0005"])
    assert "L2 penalty" in reporting.loss_note(l2) and "smoothing" not in reporting.loss_note(l2)
    no_validation = apply_overrides(get_recipe("sample"), ["validation=0"])
    assert "validation" not in reporting.loss_note(no_validation)


def test_per_class_accuracy_csv_matches_the_predictions(record):
    out, _, data, probs = record
    with open(out / "per_class_accuracy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels, predicted = data.test.labels, probs.argmax(-1)
    assert [r["class"] for r in rows] == list(data.classes)
    assert sum(int(r["test_images"]) for r in rows) == len(labels) == 128
    assert sum(int(r["correct"]) for r in rows) == int(np.sum(predicted == labels))
    for c, r in enumerate(rows):
        mask = labels == c
        assert int(r["test_images"]) == mask.sum()
        assert float(r["accuracy"]) == pytest.approx(np.mean(predicted[mask] == c), abs=1e-6)
    assert "## Per-class test accuracy" in (out / "report.md").read_text()


def test_per_class_accuracy_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 0, 1, 1, 0])
    rows = reporting.per_class_accuracy(labels, predicted, ("a", "b", "c", "d"))
    assert [(r["test_images"], r["correct"]) for r in rows] == [(3, 2), (2, 2), (1, 0), (0, 0)]
    assert [r["accuracy"] for r in rows] == [pytest.approx(2 / 3), 1.0, 0.0, None]
    table = "\n".join(reporting.per_class_section(rows))
    assert "| a | 3 | 2 | 66.67% |" in table and "| d | 0 | 0 | n/a |" in table


def test_confusion_matrix_rows_are_normalised():
    matrix = reporting.confusion_matrix(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 1, 0]), 4)
    fractions = reporting.normalize_rows(matrix)
    np.testing.assert_allclose(fractions[:3].sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(fractions), [2 / 3, 1, 0, 0])  # recall per class
    assert not fractions[3].any()  # a class with no test image: zeros, not NaN


def test_figures_are_written_and_raw_counts_kept(record):
    out, _, data, probs = record
    for png in ("accuracy", "loss", "lr", "samples", "samples_augmented", "predictions_correct",
                "predictions_incorrect", "confusion_matrix"):
        with Image.open(out / f"{png}.png") as img:
            img.verify()
        assert f"({png}.png)" in (out / "report.md").read_text()
    matrix = np.loadtxt(out / "confusion_matrix.csv", delimiter=",", dtype=int)
    np.testing.assert_array_equal(matrix, reporting.confusion_matrix(data.test.labels, probs.argmax(-1), 10))


def test_augmented_samples_differ_from_the_raw_ones():
    from layerkit import augment

    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    shown = reporting.augment_images(images, augment.augmentation("cifar", seed=0))
    assert shown.dtype == np.uint8 and shown.shape == images.shape
    assert not np.array_equal(shown, images)
    np.testing.assert_array_equal(reporting.augment_images(images, []), images)


def test_no_augmented_figure_without_augmentation(tmp_path):
    _record(tmp_path, ["augment=none"])
    assert (tmp_path / "samples.png").is_file() and not (tmp_path / "samples_augmented.png").exists()
    assert "augment=none" in (tmp_path / "report.md").read_text()


def test_prediction_titles_show_the_confidence():
    assert reporting.prediction_title("cat", "dog", 0.934) == "cat 93% (dog)"
    assert reporting.prediction_title("cat", "cat") == "cat (cat)"


def test_durations_read_as_minutes_and_hours():
    assert reporting.duration(42.34) == "42.3 s"
    assert reporting.duration(1546.9) == "25 min 47 s"
    assert reporting.duration(7384) == "2 h 3 min 4 s"


def test_the_results_table_names_the_runs_tta():
    from layerkit.training.report import results_table

    rows = "\n".join(results_table({"tta": "6view", "test_accuracy_final_tta": 0.714, "test_accuracy_best_tta": 0.7}))
    assert "| test accuracy, end-of-training weights, 6view TTA | 71.40% |" in rows
    assert "best-epoch weights, 6view TTA" in rows and "flip" not in rows
