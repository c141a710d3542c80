"""Using a run's checkpoints: evaluate on the test split, predict image files."""

import json
from pathlib import Path

import numpy as np

from layerkit.data.decode import decode_file, fit_to
from layerkit.saving import load_model
from layerkit.training.checkpoints import checkpoint_file
from layerkit.training.config import Config
from layerkit.training.data import load_data
from layerkit.training.run import RunError, predict_probabilities, scores


def _open(run_dir, weights):
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a layerkit run directory (no config.json)")
    path = checkpoint_file(run_dir, weights)  # the committed one, even if a kill left links stale
    if path is None:
        raise RunError(f"{run_dir} has no {weights} checkpoint (state.json names none); has an epoch finished?")
    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    return config, load_model(path)


def evaluate_run(run_dir, weights="best", tta="none") -> dict:
    """Test accuracy and loss of a run's `weights`; `tta`: none, flip or 6view."""
    config, model = _open(run_dir, weights)
    data = load_data(config)
    result = scores(predict_probabilities(model, data.test, tta), data.test.labels)
    result["images"] = int(len(data.test.labels))
    return result


def predict_files(run_dir, paths, weights="best", top=3):
    config, model = _open(run_dir, weights)
    classes = json.loads((Path(run_dir) / "classes.json").read_text())
    size = tuple(model.input_shape[1:3])
    images = []
    for p in paths:
        images.append(fit_to(decode_file(p), size))  # a DecodeError names the file
    probs = np.asarray(model.predict(np.stack(images).astype("float32"), verbose=0))
    top = max(1, min(top, len(classes)))
    for path, row in zip(paths, probs):
        order = np.argsort(-row)[:top]
        yield path, [(classes[i], float(row[i])) for i in order]
