"""The end-of-run record: plots as PNG and a `report.md` with the numbers, labelled with units."""

import csv
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from layerkit._atomic import atomic_write  # noqa: E402


def read_history(path) -> dict[str, list[float]]:
    """history.csv's columns; Keras's CSVLogger writes "NA" in the val_ columns of a run
    without validation: those columns are left out."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = rows[0].keys() if rows else []
    history = {k: [float(r[k]) for r in rows if r.get(k) not in (None, "", "NA")] for k in keys}
    return {k: v for k, v in history.items() if v or not rows}


# === Numbers in words ===


def percent(value) -> str:
    return f"{100 * value:.2f}%"


def duration(seconds) -> str:
    """1546.9 -> '25 min 47 s'; under a minute to a tenth of a second."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s"


def _count(value) -> str:
    return f"{int(value):,}"


def _loss(value) -> str:
    return f"{value:.4f}"


def _rate(value) -> str:
    return f"{int(round(value)):,} images/s"


# results.json key -> (label with units, formatter); the table lists them in this order.
RESULT_LABELS = {
    "test_accuracy_final": ("test accuracy, end-of-training weights", percent),
    "test_accuracy_final_tta": ("test accuracy, end-of-training weights, {tta} TTA", percent),
    "test_accuracy_best": ("test accuracy, best-epoch weights", percent),
    "test_accuracy_best_tta": ("test accuracy, best-epoch weights, {tta} TTA", percent),
    "test_loss_final": ("test loss (plain cross-entropy), end-of-training weights", _loss),
    "best_epoch": ("best epoch (1-based)", str),
    "best_selected_on": ("best epoch picked on", str),
    "tta": ("test-time augmentation", str),
    "test_images": ("test images", _count),
    "epochs": ("epochs", _count),
    "epochs_completed": ("epochs completed", _count),
    "parameters": ("parameters", _count),
    "train_seconds_this_session": ("training time, this session", duration),
    "train_seconds_total": ("training time, all sessions (sum of epoch times)", duration),
    "mean_images_per_sec": ("mean training speed", _rate),
}


def format_result(key: str, value, tta: str = "flip") -> tuple[str, str]:
    """(label, value) for one results.json entry (`tta`: the run's, named in the TTA rows); an
    unknown key keeps its name."""
    if value is None:
        return RESULT_LABELS.get(key, (key,))[0].format(tta=tta), "n/a"
    if key in RESULT_LABELS:
        label, fmt = RESULT_LABELS[key]
        return label.format(tta=tta), fmt(value)
    label = key
    if isinstance(value, float):
        return label, f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return label, json.dumps(value)
    return label, str(value)


def results_table(results: dict) -> list[str]:
    """Markdown rows: known keys labelled, in RESULT_LABELS order, then the rest by name.
    ``splits`` is left to `data_section`."""
    keys = [k for k in RESULT_LABELS if k in results]
    keys += [k for k in results if k not in RESULT_LABELS and k not in ("splits", "data")]
    lines = ["| measure | value |", "| --- | --- |"]
    for key in keys:
        label, value = format_result(key, results[key], results.get("tta", "flip"))
        lines.append(f"| {label} | {value} |")
    return lines


def data_section(splits: dict, data: dict | None = None) -> list[str]:
    """Markdown: where the data came from (`data`: results.json's), then one row per split, its
    image count and where its images came from."""
    order = [s for s in ("train", "validation", "test") if s in splits] + [s for s in splits if s not in
                                                                           ("train", "validation", "test")]
    lines = ["## Data", ""]
    if data:
        limits = "".join(f", {k}={data[k]}" for k in ("train_limit", "test_limit") if data.get(k))
        lines += [f"`{data.get('path')}`: {_count(data.get('images', 0))} images in {data.get('classes')} "
                  f"classes{limits}.", ""]
    lines += ["| split | images | from |", "| --- | ---: | --- |"]
    for name in order:
        split = splits[name]
        lines.append(f"| {name} | {_count(split.get('images', 0))} | {split.get('from', '')} |")
    return lines + [""]


def loss_note(config) -> str:
    """Which losses include label smoothing (and the L2 penalty): Keras computes the
    training and the validation loss with the compiled loss plus the model's regularisation
    losses; the test loss in results.json is plain cross-entropy (`run.scores`)."""
    extras = []
    if config.label_smoothing > 0:
        extras.append(f"label smoothing {config.label_smoothing:g}")
    if config.l2 > 0:
        extras.append(f"the L2 penalty on kernels (l2={config.l2:g})")
    if not extras:
        return ("Losses: training, validation and test losses are all plain cross-entropy (no label "
                "smoothing, no L2 penalty); the training loss is the mean over the epoch's augmented batches.")
    included = " and ".join(extras)
    if config.validation:
        which = ("the training loss and the validation loss (history.csv `loss`, `val_loss`; loss.png) "
                 f"include {included}: Keras computes both with the compiled loss")
    else:
        which = (f"the training loss (history.csv `loss`; loss.png) includes {included}: "
                 "Keras computes it with the compiled loss")
    return f"Losses: {which}. The test loss in the table is plain cross-entropy, so it is not directly comparable."


# === Per-class accuracy and the confusion matrix ===


def per_class_accuracy(labels, predicted, classes) -> list[dict]:
    """One row per class: its test images, how many were predicted right, the fraction
    (None for a class with no test image)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    rows = []
    for c, name in enumerate(classes):
        mask = labels == c
        n, correct = int(mask.sum()), int(np.sum(predicted[mask] == c))
        rows.append({"class": name, "test_images": n, "correct": correct,
                     "accuracy": correct / n if n else None})
    return rows


def write_per_class_csv(rows: list[dict], path) -> Path:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["class", "test_images", "correct", "accuracy"])
    for r in rows:
        writer.writerow([r["class"], r["test_images"], r["correct"],
                         "" if r["accuracy"] is None else f"{r['accuracy']:.6f}"])
    atomic_write(path, text.getvalue())
    return Path(path)


def per_class_section(rows: list[dict]) -> list[str]:
    lines = ["## Per-class test accuracy", "",
             "| class | test images | correct | accuracy |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        acc = "n/a" if r["accuracy"] is None else percent(r["accuracy"])
        lines.append(f"| {r['class']} | {_count(r['test_images'])} | {_count(r['correct'])} | {acc} |")
    return lines + ["", "Also in per_class_accuracy.csv (accuracy as a fraction).", ""]


def confusion_matrix(labels, predicted, num_classes) -> np.ndarray:
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m


def normalize_rows(matrix) -> np.ndarray:
    """Each row divided by its sum: row i is how the images of true class i were predicted,
    the diagonal the recall of each class. A class with no image keeps a row of zeros."""
    matrix = np.asarray(matrix, dtype="float64")
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def plot_confusion(matrix, classes, path):
    """Rows normalised to 1 (the diagonal is each class's recall), with a colour bar; each
    cell shows its fraction. The raw counts are in confusion_matrix.csv."""
    n = len(classes)
    fractions = normalize_rows(matrix)
    side = min(2 + 0.6 * n, 24)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class's test images")
    totals = np.asarray(matrix).sum(axis=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{c} ({t:,})" for c, t in zip(classes, totals)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (test images)")
    ax.set_title(f"confusion matrix, rows normalised (diagonal = recall); {int(totals.sum()):,} test images",
                 fontsize=9)
    if n <= 30:
        for (i, j), v in np.ndenumerate(fractions):
            if matrix[i, j]:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.5 else "black")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# === Figures ===


def plot_history(history: dict, out: Path) -> list[Path]:
    paths = []
    epochs = history.get("epoch", [])
    x = list(epochs)  # history.csv counts epochs from 1, as TensorBoard and the checkpoints do
    for metric in ("accuracy", "loss"):
        if metric not in history:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x, history[metric], label="train")
        if f"val_{metric}" in history:
            ax.plot(x, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
        path = out / f"{metric}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    if "lr" in history:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(x, history["lr"])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("learning rate (at epoch start)")
        ax.grid(alpha=0.3)
        path = out / "lr.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def _grid(images, titles, path, cols, title=None, colors=None):
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i])
            ax.set_title(titles[i], fontsize=7, color=(colors[i] if colors else "black"))
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_samples(images, labels, classes, path, per_class=8, title="training samples per class"):
    """A grid: one row per class, `per_class` training images each."""
    shown, titles = [], []
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)[:per_class]
        for j in range(per_class):
            if j < len(idx):
                shown.append(images[idx[j]])
                titles.append(name if j == 0 else "")
            else:
                shown.append(np.zeros_like(images[0]))
                titles.append("")
    return _grid(shown, titles, path, per_class, title)


def augment_images(images, layers) -> np.ndarray:
    """`images` (0..255) through augmentation `layers` in training mode, as uint8 to show."""
    import keras

    x = keras.ops.convert_to_tensor(np.asarray(images, dtype="float32"))
    for layer in layers:
        x = layer(x, training=True)
    x = np.asarray(keras.ops.convert_to_numpy(x), dtype="float32")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def prediction_title(predicted: str, true: str, confidence=None) -> str:
    """'cat 93% (dog)': the predicted class, its probability, the true class."""
    shown = f" {100 * confidence:.0f}%" if confidence is not None else ""
    return f"{predicted}{shown} ({true})"


def plot_predictions(images, labels, predicted, classes, out: Path, count=24, confidence=None):
    """Two grids: correct and incorrect predictions, titled 'predicted 93% (true)' where
    `confidence` (the predicted class's probability, per image) is given."""
    paths = []
    for name, mask in (("correct", predicted == labels), ("incorrect", predicted != labels)):
        idx = np.flatnonzero(mask)[:count]
        titles = [prediction_title(classes[predicted[i]], classes[labels[i]],
                                   None if confidence is None else confidence[i]) for i in idx]
        colors = ["green" if name == "correct" else "red"] * len(idx)
        if len(idx) == 0:
            idx, titles, colors = [], [], []
        heading = "predicted probability (true)" if confidence is not None else "predicted (true)"
        path = out / f"predictions_{name}.png"
        _grid([images[i] for i in idx] or [np.zeros((8, 8, 3), np.uint8)],
              titles or [f"no {name} predictions"], path, 6,
              f"{name} predictions: {heading}", colors or None)
        paths.append(path)
    return paths


def plot_graph(model, path) -> str:
    """plot_model where pydot and graphviz exist; otherwise a note saying why not."""
    import keras

    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, expand_nested=False)
        return ""
    except (ImportError, OSError, AttributeError) as err:
        return f"model graph not drawn: {err} (install pydot and graphviz to get model.png)"


# === report.md ===

FIGURE_TITLES = {
    "accuracy": "Accuracy per epoch",
    "loss": "Loss per epoch",
    "lr": "Learning rate per epoch",
    "samples": "Training samples per class",
    "samples_augmented": "The same samples after augmentation (training mode)",
    "predictions_correct": "Correct test predictions",
    "predictions_incorrect": "Incorrect test predictions",
    "confusion_matrix": "Confusion matrix (rows normalised)",
    "model": "Model graph",
}


def write_report(out: Path, config, results: dict, figures: list[Path], notes: list[str],
                 per_class: list[dict] | None = None) -> Path:
    lines = [f"# layerkit run: {config.model} on {config.data}", ""]
    lines += results_table(results) + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if results.get("splits"):
        lines += data_section(results["splits"], results.get("data"))
    if per_class:
        lines += per_class_section(per_class)
    for fig in figures:
        heading = FIGURE_TITLES.get(fig.stem, fig.stem.replace("_", " "))
        lines += [f"## {heading}", "", f"![{fig.stem}]({fig.name})", ""]
    lines += ["## Configuration", "", "```json", config.to_json(), "```", ""]
    path = out / "report.md"
    atomic_write(path, "\n".join(lines))
    return path
