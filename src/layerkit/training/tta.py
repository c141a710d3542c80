"""Test-time augmentation: the one implementation `finish()` and `layerkit evaluate --tta` use.

`Config.tta` (or ``--tta``) names the views:

- ``none``: the image;
- ``flip``: the image and its mirror, 1/2 each;
- ``6view`` (airbench's): those two at 1/4 each, and the 1-pixel reflect translations up-left
  and down-right of each at 1/8.

The views' log-probabilities are averaged with those weights and renormalised: for a model
ending in softmax this ranks the classes exactly as averaging its logits (airbench's TTA),
since each view's log-normaliser is the same for every class. Views are made with
`keras.ops` inside the model, so the whole evaluation is one compiled program.
"""

import keras
from keras import ops

MODES = ("none", "flip", "6view")


def check_mode(mode) -> str:
    if mode is True:  # a legacy flag: flip
        return "flip"
    if mode is False or mode is None:
        return "none"
    if mode not in MODES:
        raise ValueError(f"tta must be one of {', '.join(MODES)}. Received: tta={mode!r}")
    return mode


def tta_views(images, mode):
    """[(weight, images)], weights summing to 1, for NHWC `images` (arrays or Keras tensors)."""
    mode = check_mode(mode)
    if mode == "none":
        return [(1.0, images)]
    mirror = ops.flip(images, axis=2)
    if mode == "flip":
        return [(0.5, images), (0.5, mirror)]
    h, w = images.shape[1:3]
    padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [padded[:, :h, :w], padded[:, 2:h + 2, 2:w + 2]]
    return [(0.25, images), (0.25, mirror)] + [(0.125, v) for s in shifted for v in (s, ops.flip(s, axis=2))]


def tta_model(model: keras.Model, mode) -> keras.Model:
    """`model` (images -> class probabilities) evaluated on the views of `mode`, averaged."""
    mode = check_mode(mode)
    if mode == "none":
        return model
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype, name="pixels")
    total = None
    for weight, view in tta_views(inputs, mode):
        probs = ops.cast(model(view, training=False), "float32")
        term = weight * ops.log(ops.maximum(probs, 1e-30))
        total = term if total is None else total + term
    return keras.Model(inputs, ops.softmax(total, axis=-1), name=f"{model.name}-tta-{mode}")
