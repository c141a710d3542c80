"""Using a run's checkpoints: evaluate on the test split, predict image files.

Both run the model through `run_forward` (a `layerkit.forward.Forward` that keeps converted
graphs in the run's ``onnx-cache/``), as the end of training does.
"""

import json
from pathlib import Path

import numpy as np

from layerkit.data.decode import decode_file, fit_to
from layerkit.saving import load_model
from layerkit.training.checkpoints import checkpoint_file, position, read_state
from layerkit.training.config import Config
from layerkit.training.data import load_data
from layerkit.training.run import RunError, scores
from layerkit.training.tta import VIEWS, check_mode, predict_probabilities


def run_forward(model, run_dir, images=None, batch_size=256, verbose=True):
    """The classifier `model`'s forward function for the run in `run_dir`: logits where it ends
    in softmax, converted graphs cached in ``run_dir/onnx-cache`` (`layerkit.forward`)."""
    from layerkit.forward import CACHE_FOLDER, Forward

    return Forward(model, logits=True, images=images, batch_size=batch_size,
                   cache_dir=Path(run_dir) / CACHE_FOLDER, verbose=verbose)


def _open(run_dir, weights):
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a layerkit run directory (no config.json)")
    path = checkpoint_file(run_dir, weights)  # the committed one, even if a kill left links stale
    if path is None:
        if read_state(run_dir) is None:
            raise RunError(f"{run_dir} has no checkpoint: no epoch of it has finished yet (the run is starting, "
                           "or stopped before its first epoch ended); try again once an epoch has finished")
        raise RunError(f"{run_dir} has no {weights} checkpoint: no epoch was picked as best (a run without "
                       "validation picks none); pass --weights last")
    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    return config, load_model(path)


def evaluate_run(run_dir, weights="best", tta="none") -> dict:
    """Test accuracy and loss of a run's `weights`; `tta`: none, flip or 6view."""
    config, model = _open(run_dir, weights)
    data = load_data(config)
    views = VIEWS[check_mode(tta)]
    forward = run_forward(model, run_dir, images=len(data.test.labels) * views, batch_size=data.test.batch_size)
    result = scores(predict_probabilities(forward, data.test, tta), data.test.labels)
    result["images"] = int(len(data.test.labels))
    result["forward"] = forward.record()
    return result


def predict_files(run_dir, paths, weights="best", top=3):
    config, model = _open(run_dir, weights)
    classes = json.loads((Path(run_dir) / "classes.json").read_text())
    size = tuple(model.input_shape[1:3])
    images = []
    for p in paths:
        images.append(fit_to(decode_file(p), size))  # a DecodeError names the file
    forward = run_forward(model, run_dir, images=len(images))
    probs = predict_probabilities(forward, np.stack(images))
    top = max(1, min(top, len(classes)))
    for path, row in zip(paths, probs):
        order = np.argsort(-row)[:top]
        yield path, [(classes[i], float(row[i])) for i in order]


def describe_weights(run_dir, weights="best") -> str:
    """Which epoch's weights `weights` are, and whether the run is still to finish: "best weights
    (epoch 2; the run has trained 3 of its 6 epochs so far)"; the last weights of a step
    checkpoint: "last weights (step 5 of 8 in epoch 4; ...)"."""
    run_dir = Path(run_dir)
    state = read_state(run_dir) or {}
    done = state.get("epochs_completed", 0)
    epoch = state.get("best_epoch") if weights == "best" else done
    where = position(state) if weights == "last" and state.get("step") else f"epoch {epoch}"
    epochs = json.loads((run_dir / "config.json").read_text()).get("epochs")
    unfinished = not (run_dir / "results.json").exists() and isinstance(epochs, int) and done < epochs
    return (f"{weights} weights ({where}"
            + (f"; the run has trained {done} of its {epochs} epochs so far" if unfinished else "") + ")")
