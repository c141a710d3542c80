"""The end-of-run record: plots as PNG and a `report.md` with the numbers."""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_history(path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = rows[0].keys() if rows else []
    return {k: [float(r[k]) for r in rows if r.get(k) not in (None, "")] for k in keys}


def plot_history(history: dict, out: Path) -> list[Path]:
    paths = []
    epochs = history.get("epoch", [])
    x = [e + 1 for e in epochs]
    for metric in ("accuracy", "loss"):
        if metric not in history:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(x, history[metric], label="train")
        if f"val_{metric}" in history:
            ax.plot(x, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
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
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
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


def plot_samples(images, labels, classes, path, per_class=8):
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
    return _grid(shown, titles, path, per_class, "training samples per class")


def plot_predictions(images, labels, predicted, classes, out: Path, count=24):
    """Two grids: correct and incorrect predictions, titled 'predicted (true)'."""
    paths = []
    for name, mask in (("correct", predicted == labels), ("incorrect", predicted != labels)):
        idx = np.flatnonzero(mask)[:count]
        titles = [f"{classes[predicted[i]]} ({classes[labels[i]]})" for i in idx]
        colors = ["green" if name == "correct" else "red"] * len(idx)
        if len(idx) == 0:
            idx, titles, colors = [], [], []
        path = out / f"predictions_{name}.png"
        _grid([images[i] for i in idx] or [np.zeros((8, 8, 3), np.uint8)],
              titles or [f"no {name} predictions"], path, 6,
              f"{name} predictions: predicted (true)", colors or None)
        paths.append(path)
    return paths


def confusion_matrix(labels, predicted, num_classes) -> np.ndarray:
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m


def plot_confusion(matrix, classes, path):
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = matrix.max() / 2 if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                color="white" if v > thresh else "black")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_graph(model, path) -> str:
    """plot_model where pydot and graphviz exist; otherwise a note saying why not."""
    import keras

    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, expand_nested=False)
        return ""
    except (ImportError, OSError, AttributeError) as err:
        return f"model graph not drawn: {err} (install pydot and graphviz to get model.png)"


def write_report(out: Path, config, results: dict, figures: list[Path], notes: list[str]) -> Path:
    lines = [f"# layerkit run: {config.model} on {config.data}", ""]
    lines += ["| measure | value |", "| --- | --- |"]
    for key, value in results.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        lines.append(f"| {key} | {value} |")
    lines += ["", "## Configuration", "", "```json", config.to_json(), "```", ""]
    for fig in figures:
        lines += [f"## {fig.stem.replace('_', ' ')}", "", f"![{fig.stem}]({fig.name})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
