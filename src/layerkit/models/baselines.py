"""The flowers lab's baselines: a dense network and a plain conv stack."""

import keras

from layerkit.models._common import classifier, image_input
from layerkit.models.registry import register


@register("dense")
def dense(num_classes=5, input_shape=(192, 192, 3), units=(512, 256), classifier_activation="softmax"):
    """Three dense layers on the flattened image (the flowers lab's first model)."""
    inputs = image_input(input_shape)
    x = inputs
    x = keras.layers.Flatten(name="flatten")(x)
    for i, n in enumerate(units):
        x = keras.layers.Dense(n, activation="relu", name=f"dense{i}")(x)
    return keras.Model(inputs, classifier(x, num_classes, classifier_activation), name="dense")


@register("cnn")
def cnn(num_classes=5, input_shape=(192, 192, 3), classifier_activation="softmax"):
    """A conv stack with max-pooling and global average pooling (the flowers lab's convnet)."""
    layers = keras.layers
    inputs = image_input(input_shape)
    x = inputs
    plan = [(16, False), (30, True), (60, True), (90, True), (110, True), (130, False)]
    for i, (filters, pool) in enumerate(plan):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if pool:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Conv2D(40, 1, padding="same", activation="relu", name="conv_1x1")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, classifier(x, num_classes, classifier_activation), name="cnn")
