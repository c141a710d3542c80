"""Test-time augmentation: the one implementation `finish()` and `layerkit evaluate --tta` use.

`Config.tta` (or ``--tta``) names the views:

- ``none``: the image;
- ``flip``: the image and its mirror, 1/2 each;
- ``6view`` (airbench's): those two at 1/4 each, and the 1-pixel reflect translations up-left
  and down-right of each at 1/8.

Each view of a batch is made on the host (NumPy: a flip, a reflect pad and a crop) and runs
through the same `layerkit.forward.Forward` as the plain evaluation, on whichever runtime it
picked. The views' log-probabilities are averaged with those weights and renormalised; from a
classifier's logits (what `Forward(..., logits=True)` gives for a model ending in softmax) this
is exactly airbench's average of the logits, since each view's log-normaliser is the same for
every class.
"""

import numpy as np

MODES = ("none", "flip", "6view")
VIEWS = {"none": 1, "flip": 2, "6view": 6}  # forward passes per image


def check_mode(mode) -> str:
    if mode is True:  # a legacy flag: flip
        return "flip"
    if mode is False or mode is None:
        return "none"
    if mode not in MODES:
        raise ValueError(f"tta must be one of {', '.join(MODES)}. Received: tta={mode!r}")
    return mode


def tta_views(images, mode):
    """[(weight, images)], weights summing to 1, for a NHWC batch `images` (NumPy)."""
    mode = check_mode(mode)
    images = np.asarray(images)
    if mode == "none":
        return [(1.0, images)]
    mirror = images[:, :, ::-1]
    if mode == "flip":
        return [(0.5, images), (0.5, mirror)]
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [padded[:, :h, :w], padded[:, 2:h + 2, 2:w + 2]]
    return [(0.25, images), (0.25, mirror)] + [(0.125, v) for s in shifted for v in (s, s[:, :, ::-1])]


def predict_probabilities(forward, images, tta="none", on_batch=None) -> np.ndarray:
    """Class probabilities (float64) of `images` (an array, or a `Pipeline` of (images, labels)
    batches) through `forward` (a `layerkit.forward.Forward` of a classifier), with the views of
    `tta`: none, flip or 6view. `on_batch(n)`: called after each batch with the batches done."""
    from layerkit.forward import _batches, log_probabilities, probabilities

    mode = check_mode(tta)
    if hasattr(images, "shape"):
        array, step = np.asarray(images), forward.batch_size
        images = (array[i:i + step] for i in range(0, len(array), step))
    out = []
    for batch in _batches(images):
        batch = np.asarray(batch)
        if mode == "none":
            out.append(probabilities(forward.batch(batch), forward.logits))
            if on_batch is not None:
                on_batch(len(out))
            continue
        total = sum(w * log_probabilities(forward.batch(view), forward.logits) for w, view in tta_views(batch, mode))
        out.append(probabilities(total, from_logits=True))  # renormalised
        if on_batch is not None:
            on_batch(len(out))
    if not out:
        raise ValueError("no images to evaluate")
    return np.concatenate(out)
