"""Transfer learning on `keras.applications.Xception` with a new classifier head."""

import os

import keras

from layerkit.models._common import check_rate, classifier, image_input
from layerkit.models.registry import register


def _base_weights(weights):
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(
                f"`weights` must be None, 'imagenet' or the path of a weights file. "
                f"Received: weights={weights!r}, which is not a file."
            )
        return path
    raise ValueError(
        f"`weights` must be None, 'imagenet' or the path of a weights file. Received: weights={weights!r}"
    )


@register("xception")
def xception(
    num_classes=5,
    input_shape=(192, 192, 3),
    weights=None,
    dropout=0.0,
    trainable=True,
    classifier_activation="softmax",
):
    """Xception base (include_top=False, all weights trainable) + global pooling + new head.

    ``weights``: None (random), ``"imagenet"`` (downloaded by Keras where a network
    exists) or the path of a local no-top weights file. Inputs are expected in
    [-1, 1] (Xception's preprocessing).
    """
    check_rate("dropout", dropout)
    weights = _base_weights(weights)
    inputs = image_input(input_shape)
    if min(input_shape[:2]) < 71 or input_shape[2] != 3:
        raise ValueError(
            f"Xception needs RGB input of at least 71x71. Received: input_shape={tuple(input_shape)}"
        )
    try:
        base = keras.applications.Xception(include_top=False, weights=weights, input_shape=tuple(input_shape))
    except Exception as err:  # keras.utils.get_file raises plain Exception on a failed download
        if weights == "imagenet":
            raise ConnectionError(
                "Could not fetch the ImageNet weights of Xception (no network?). Download "
                "'xception_weights_tf_dim_ordering_tf_kernels_notop.h5' where a network exists "
                "and pass its path as weights=PATH, or use weights=None. Cause: "
                f"{type(err).__name__}: {err}"
            ) from err
        raise
    base.trainable = bool(trainable)
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes, classifier_activation), name="xception")
