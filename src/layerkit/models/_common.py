"""Pieces every zoo builder needs: argument checks and the classifier head."""

import keras


def image_input(input_shape, name="image") -> keras.KerasTensor:
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) of positive integers. "
            f"Received: input_shape={input_shape!r}"
        )
    return keras.Input(tuple(input_shape), name=name)


def check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}"
        )
    return num_classes


def check_rate(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


def classifier(x, num_classes, activation="softmax", name="predictions"):
    """Dense head; the output stays float32 under mixed precision."""
    check_num_classes(num_classes)
    if activation not in ("softmax", None, "linear"):
        raise ValueError(
            "`classifier_activation` must be 'softmax' or None (logits). "
            f"Received: classifier_activation={activation!r}"
        )
    x = keras.layers.Dense(num_classes, name=name + "_dense")(x)
    return keras.layers.Activation(activation or "linear", dtype="float32", name=name)(x)


def preactivation_head(x, num_classes, activation="softmax", momentum=0.9):
    """The end of a pre-activation net (its blocks end on a convolution): the last BN-ReLU,
    global average pooling, then `classifier`."""
    x = keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name="final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return classifier(x, num_classes, activation)
