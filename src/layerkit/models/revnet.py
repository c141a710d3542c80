"""Reversible residual networks for CIFAR, RevNet-38/110/164 (Gomez et al. 2017).

The configurations are the paper's Table 1, as in its code (renmengye/revnet-public,
``resnet/configs/cifar_configs.py``): a 3x3 stem of 32 channels, then 3 stages of
`units` RevBlocks each (strides 1, 2, 2):

    RevNet-38   3-3-3 units, 32/64/112 channels, basic           (paper: 0.46M parameters)
    RevNet-110  9-9-9 units, 32/64/128 channels, basic           (paper: 1.73M)
    RevNet-164  9-9-9 units, 32/64/128 x4 channels, bottleneck   (paper: 1.75M)

Depth counts the convolutions: units x 3 stages x 2 functions (F, G) x 2 or 3 convs,
plus the stem and the classifier. A unit that changes the width or the resolution (the
first of a stage, where it does) is a non-reversible `RevBlock` whose activations are
stored; the units after it form one `ReversibleStack` per stage.
"""

import keras

from layerkit.blocks import RevBlock, ReversibleStack
from layerkit.models._common import image_input, preactivation_head
from layerkit.models.registry import register

# depth: (units per stage, channels per stage, bottleneck)
CONFIGS = {
    38: (3, (32, 64, 112), False),
    110: (9, (32, 64, 128), False),
    164: (9, (32, 64, 128), True),
}
STEM_FILTERS = 32


@register("revnet-{depth}", examples=["revnet-38", "revnet-110", "revnet-164"])
def revnet(
    depth,
    num_classes=10,
    input_shape=(32, 32, 3),
    reversible=True,
    weight_decay=0.0,
    momentum=0.9,
    classifier_activation="softmax",
):
    """RevNet-depth for CIFAR (38, 110, 164); `reversible=False` trains it by plain backprop."""
    if depth not in CONFIGS:
        raise ValueError(
            f"RevNet depth must be one of {', '.join(map(str, CONFIGS))} (the paper's "
            f"configurations). Received: depth={depth!r}"
        )
    units, widths, bottleneck = CONFIGS[depth]
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None
    common = dict(bottleneck=bottleneck, momentum=momentum, epsilon=1e-5, kernel_regularizer=reg)

    # === Layers ===
    inputs = image_input(input_shape)
    x = keras.layers.Conv2D(STEM_FILTERS, 3, padding="same", use_bias=False,
                            kernel_initializer="he_normal", kernel_regularizer=reg,
                            name="stem")(inputs)
    channels = STEM_FILTERS
    for s, width in enumerate(widths):
        filters = width * 4 if bottleneck else width
        strides = 1 if s == 0 else 2
        remaining = units
        if strides != 1 or channels != filters:
            x = RevBlock(filters, strides=strides, name=f"stage{s}_transition", **common)(x)
            remaining -= 1
        if remaining:
            x = ReversibleStack(remaining, filters, reversible=reversible,
                                name=f"stage{s}_stack", **common)(x)
        channels = filters
    outputs = preactivation_head(x, num_classes, classifier_activation, momentum)

    # === Functional Model ===
    return keras.Model(inputs, outputs, name=f"revnet-{depth}")
