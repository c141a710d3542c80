"""Wide Residual Networks, WRN-n-k (Zagoruyko & Komodakis 2016)."""

import keras

from layerkit.blocks import WideResidualGroup
from layerkit.models._common import check_rate, image_input, preactivation_head
from layerkit.models.registry import register


@register("wrn-{depth}-{width}", examples=["wrn-16-4", "wrn-16-8", "wrn-28-10", "wrn-40-2", "wrn-40-4"])
def wide_resnet(
    depth,
    width,
    num_classes=10,
    input_shape=(32, 32, 3),
    dropout=0.0,
    weight_decay=0.0,
    momentum=0.9,
    classifier_activation="softmax",
):
    """Wide ResNet WRN-depth-width: 3 groups of (depth-4)/6 pre-activation blocks at 16k, 32k, 64k."""
    if depth < 10 or (depth - 4) % 6:
        valid = ", ".join(str(d) for d in range(10, 53, 6))
        raise ValueError(
            f"WRN depth must satisfy (depth - 4) % 6 == 0 and depth >= 10 ({valid}, ...). "
            f"Received: depth={depth}"
        )
    if width < 1:
        raise ValueError(f"WRN width must be >= 1. Received: width={width}")
    check_rate("dropout", dropout)
    n = (depth - 4) // 6
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None
    inputs = image_input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                            kernel_regularizer=reg, name="stem")(inputs)
    for g, (filters, strides) in enumerate(((16 * width, 1), (32 * width, 2), (64 * width, 2))):
        x = WideResidualGroup(filters, n, strides=strides, dropout=dropout, momentum=momentum,
                              kernel_regularizer=reg, name=f"group{g}")(x)
    outputs = preactivation_head(x, num_classes, classifier_activation, momentum)
    return keras.Model(inputs, outputs, name=f"wrn-{depth}-{width}")
