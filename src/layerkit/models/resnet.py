"""Pre-activation CIFAR ResNets, ResNet-D (He et al. 2016, "Identity Mappings in Deep
Residual Networks"): the baselines of the RevNet paper (ResNet-32/110/164)."""

import keras

from layerkit.blocks import Bottleneck, Residual
from layerkit.models._common import image_input, preactivation_head
from layerkit.models.registry import register

# He et al. use basic blocks up to ResNet-110 and bottlenecks for ResNet-164 and -1001.
BOTTLENECK_FROM_DEPTH = 164


def resnet_layout(depth):
    """(blocks per stage, bottleneck) of ResNet-`depth`, or a ValueError listing valid depths.

    Basic blocks (2 convolutions) for depth = 6n + 2 < 164; bottleneck blocks
    (3 convolutions) for depth = 9n + 2 >= 164.
    """
    if isinstance(depth, int) and not isinstance(depth, bool):
        if 8 <= depth < BOTTLENECK_FROM_DEPTH and (depth - 2) % 6 == 0:
            return (depth - 2) // 6, False
        if depth >= BOTTLENECK_FROM_DEPTH and (depth - 2) % 9 == 0:
            return (depth - 2) // 9, True
    basic = ", ".join(str(d) for d in range(8, BOTTLENECK_FROM_DEPTH, 6))
    raise ValueError(
        "ResNet depth must be 6n+2 below 164 (basic blocks: "
        f"{basic}) or 9n+2 from 164 on (bottleneck blocks: 164, 173, ..., 1001). "
        f"Received: depth={depth!r}"
    )


@register("resnet-{depth}", examples=["resnet-32", "resnet-110", "resnet-164"])
def resnet(
    depth,
    num_classes=10,
    input_shape=(32, 32, 3),
    weight_decay=0.0,
    momentum=0.9,
    classifier_activation="softmax",
):
    """Pre-activation CIFAR ResNet-depth: 3 stages at 16/32/64 channels (x4 for bottlenecks)."""
    blocks, bottleneck = resnet_layout(depth)
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None

    # === Layers ===
    inputs = image_input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                            kernel_regularizer=reg, name="stem")(inputs)
    for s, (width, strides) in enumerate(((16, 1), (32, 2), (64, 2))):
        for b in range(blocks):
            common = dict(strides=strides if b == 0 else 1, momentum=momentum, epsilon=1e-5,
                          kernel_regularizer=reg, name=f"stage{s}_block{b}")
            if bottleneck:
                x = Bottleneck(width, **common)(x)
            else:
                x = Residual(width, preactivation=True, **common)(x)
    outputs = preactivation_head(x, num_classes, classifier_activation, momentum)

    # === Functional Model ===
    return keras.Model(inputs, outputs, name=f"resnet-{depth}")
