"""The speed-run net and its two special pieces.

- `PatchWhitening`: a frozen k x k convolution whose filters whiten the image patches (the
  eigenvectors of their covariance, scaled by 1/sqrt(eigenvalue), each with its negative), and a
  trainable bias. `whitening_kernel` computes the filters from images.
- `PartialDirac`: the first `in_channels` filters of a convolution start as the identity, the
  rest as PyTorch's default uniform(+-1/sqrt(fan_in)).

`build_net(config)`: uint8 pixels -> translate, normalise, cutout (training only) -> whitening
-> GELU -> three blocks of conv, max pool 2, BN, GELU, conv, BN, GELU (a third conv with a
residual pair when ``block_depth=3``) -> global max pool -> linear head, scaled. Flips are done
before the net, in the train step (they follow the epoch: see `layerkit.speedrun.runner`).
"""

import keras
from keras import ops

from layerkit import augment
from layerkit.augment.patch_whitening import PatchWhitening, whitening_kernel  # noqa: F401
from layerkit.models.initializers import PartialDirac

CIFAR_MEAN = (125.3, 122.9, 113.9)  # per channel, 0..255
CIFAR_STD = (63.0, 62.1, 66.7)


# === Functional model ===


def build_net(config, num_classes: int = 10) -> keras.Model:
    layers = keras.layers
    torch_uniform = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")

    def conv(x, width, name):
        return layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=PartialDirac(),
                             name=name)(x)

    def bn(x, name):
        return layers.BatchNormalization(momentum=config.bn_momentum, epsilon=config.bn_epsilon, scale=False,
                                         name=name)(x)

    inputs = keras.Input((32, 32, 3), dtype="uint8", name="pixels")
    x = inputs
    if config.translate:
        x = augment.RandomReflectTranslate(config.translate / 32, name="translate")(x)
    x = layers.Normalization(mean=CIFAR_MEAN, variance=[s * s for s in CIFAR_STD], name="normalize")(x)
    if config.cutout:
        x = augment.Cutout(config.cutout, fill_value=0, inside=True, name="cutout")(x)
    x = PatchWhitening(config.whiten_kernel, config.whiten_eps, name="whiten")(x)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for i, width in enumerate(config.widths):
        x = conv(x, width, f"block{i}_conv1")
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.Activation("gelu", name=f"block{i}_gelu1")(bn(x, f"block{i}_bn1"))
        shortcut = x
        x = layers.Activation("gelu", name=f"block{i}_gelu2")(bn(conv(x, width, f"block{i}_conv2"), f"block{i}_bn2"))
        if config.block_depth == 3:
            x = bn(conv(x, width, f"block{i}_conv3"), f"block{i}_bn3")
            x = layers.Activation("gelu", name=f"block{i}_gelu3")(layers.Add(name=f"block{i}_add")([x, shortcut]))
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    head_init = (keras.initializers.RandomUniform(-config.head_std * 3 ** 0.5, config.head_std * 3 ** 0.5)
                 if config.head_std else torch_uniform)
    x = layers.Dense(num_classes, use_bias=False, kernel_initializer=head_init, name="head")(x)
    scale = config.head_scale or 1 / config.widths[-1]
    outputs = layers.Rescaling(scale, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="speedrun_net")
