"""airbench's CIFAR-10 speed-run nets (Keller Jordan, 2024) as zoo models.

    input (normalised images) -> PatchWhitening (2x2, fitted on training images by the run)
    -> GELU -> 3 blocks of [conv, max pool 2, BN, GELU, conv, BN, GELU (+ a third conv and a
    residual pair for airbench96)] -> global max pool -> linear head (no bias), scaled -> softmax

Convolutions start partly as the identity (`PartialDirac`); BatchNorm has no scale. The
whitening kernel is zero until fitted: `layerkit.train` fits every `PatchWhitening` of a model
on the normalised training images (`adapt`) before training.

    layerkit train --recipe speedrun-94            # the speed run (docs/benchmarks.md)
"""

import keras

from layerkit.augment.patch_whitening import PatchWhitening
from layerkit.models._common import check_num_classes, image_input
from layerkit.models.initializers import PartialDirac
from layerkit.models.registry import register


def airbench(num_classes=10, input_shape=(32, 32, 3), widths=(64, 256, 256), block_depth=2, whiten_kernel=2,
             whiten_eps=5e-4, bn_momentum=0.6, bn_epsilon=1e-12, head_scale=0.0, head_std=1.0,
             identity_init=True, name="airbench"):
    """airbench's net: patch whitening, three conv-pool-BN blocks, global max pool, scaled linear head.

    Args:
        widths: channels of the three blocks.
        block_depth: convolutions per block; 3 adds a residual pair (airbench96).
        whiten_kernel, whiten_eps: the whitening patch side and the eigenvalue damping.
        bn_momentum: Keras convention: moving = m * moving + (1 - m) * batch.
        head_scale: logits = head(x) * head_scale; 0 = 1 / widths[-1].
        head_std: std of the head's initial weights; 0 = uniform(+-1/sqrt(fan_in)).
        identity_init: convolutions start partly as the identity (`PartialDirac`).
    """
    check_num_classes(num_classes)
    widths = tuple(widths)
    if len(widths) != 3 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"`widths` must be three positive channel counts. Received: widths={widths!r}")
    if block_depth not in (2, 3):
        raise ValueError(f"`block_depth` must be 2 or 3. Received: block_depth={block_depth!r}")
    layers = keras.layers
    torch_uniform = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")

    # === Layers ===
    def conv(x, width, name):
        init = PartialDirac() if identity_init else torch_uniform
        return layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=init, name=name)(x)

    def bn(x, name):
        return layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, scale=False, name=name)(x)

    # === Functional model ===
    inputs = image_input(input_shape)
    x = PatchWhitening(whiten_kernel, whiten_eps, name="whiten")(inputs)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for i, width in enumerate(widths):
        x = conv(x, width, f"block{i}_conv1")
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Activation("gelu", name=f"block{i}_gelu1")(bn(x, f"block{i}_bn1"))
        shortcut = x
        x = layers.Activation("gelu", name=f"block{i}_gelu2")(bn(conv(x, width, f"block{i}_conv2"), f"block{i}_bn2"))
        if block_depth == 3:
            x = bn(conv(x, width, f"block{i}_conv3"), f"block{i}_bn3")
            x = layers.Activation("gelu", name=f"block{i}_gelu3")(layers.Add(name=f"block{i}_add")([x, shortcut]))
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    head_init = (keras.initializers.RandomUniform(-head_std * 3 ** 0.5, head_std * 3 ** 0.5)
                 if head_std else torch_uniform)
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=head_init, name="head")(x)
    x = layers.Rescaling(head_scale or 1 / widths[-1], dtype="float32", name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@register("airbench94")
def airbench94(num_classes=10, input_shape=(32, 32, 3), widths=(64, 256, 256), block_depth=2, whiten_kernel=2,
               whiten_eps=5e-4, bn_momentum=0.6, bn_epsilon=1e-12, head_scale=0.0, head_std=1.0, identity_init=True):
    """airbench94's net (1.97M parameters): patch whitening, 3 blocks of 2 convs, scaled linear head."""
    return airbench(num_classes, input_shape, widths, block_depth, whiten_kernel, whiten_eps, bn_momentum,
                    bn_epsilon, head_scale, head_std, identity_init, name="airbench94")


@register("airbench96")
def airbench96(num_classes=10, input_shape=(32, 32, 3), widths=(128, 384, 512), block_depth=3, whiten_kernel=2,
               whiten_eps=5e-4, bn_momentum=0.9, bn_epsilon=1e-12, head_scale=1 / 9, head_std=0.0, identity_init=True):
    """airbench96's net: wider, 3 convs a block with a residual pair."""
    return airbench(num_classes, input_shape, widths, block_depth, whiten_kernel, whiten_eps, bn_momentum,
                    bn_epsilon, head_scale, head_std, identity_init, name="airbench96")
