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

CIFAR_MEAN = (125.3, 122.9, 113.9)  # per channel, 0..255
CIFAR_STD = (63.0, 62.1, 66.7)


# === Layers ===


def whitening_kernel(images, kernel_size: int, eps: float):
    """Filters (k, k, C, 2 k k C) that whiten the k x k patches of float (N, H, W, C) `images`.

    The patch second-moment matrix ``P^T P / n`` has eigenvectors v_i and eigenvalues l_i;
    filter i is ``v_i / sqrt(l_i + eps)`` (largest l first) and filter i + kkC its negative, so
    that a GELU after it keeps both signs. Uses `keras.ops` only (runs inside jit).
    """
    k = kernel_size
    n, h, w, c = images.shape
    patches = ops.concatenate([images[:, i:h - k + 1 + i, j:w - k + 1 + j, :]  # (kh, kw, c) order
                               for i in range(k) for j in range(k)], axis=-1)
    patches = ops.reshape(ops.cast(patches, "float32"), (-1, k * k * c))
    covariance = ops.matmul(ops.transpose(patches), patches) / ops.cast(ops.shape(patches)[0], "float32")
    values, vectors = ops.eigh(covariance)  # ascending
    values, vectors = ops.flip(values, 0), ops.flip(vectors, 1)
    scaled = vectors / ops.sqrt(values + eps)[None, :]
    filters = ops.reshape(scaled, (k, k, c, k * k * c))
    return ops.concatenate([filters, -filters], axis=-1)


@keras.saving.register_keras_serializable(package="layerkit")
class PatchWhitening(keras.layers.Layer):
    """A k x k 'valid' convolution with a frozen kernel and a trainable bias; 2 k k C outputs.

    The kernel starts at zero: call `adapt(images)` (or assign `whitening_kernel(...)`) first.

    Args:
        kernel_size: the patch side k.
        eps: added to the eigenvalues when the kernel is computed by `adapt`.
    """

    def __init__(self, kernel_size=2, eps=5e-4, **kwargs):
        super().__init__(**kwargs)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive integer. Received: kernel_size={kernel_size!r}")
        if not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0. Received: eps={eps!r}")
        self.kernel_size = kernel_size
        self.eps = eps

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError("PatchWhitening expects (batch, height, width, channels) with known channels. "
                             f"Received: input_shape={tuple(input_shape)}")
        k, c = self.kernel_size, input_shape[-1]
        self.filters = 2 * k * k * c
        self.kernel = self.add_weight(name="kernel", shape=(k, k, c, self.filters), initializer="zeros",
                                      trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def adapt(self, images):
        """Set the kernel from float images (N, H, W, C), already normalised as the layer will see them."""
        images = ops.convert_to_tensor(images, "float32")
        if not self.built:
            self.build(images.shape)
        self.kernel.assign(whitening_kernel(images, self.kernel_size, self.eps))

    def call(self, inputs):
        x = ops.conv(inputs, ops.cast(self.kernel, inputs.dtype), padding="valid")
        return x + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        k = self.kernel_size
        return (n, None if h is None else h - k + 1, None if w is None else w - k + 1, 2 * k * k * c)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "eps": self.eps}


@keras.saving.register_keras_serializable(package="layerkit")
class PartialDirac(keras.initializers.Initializer):
    """Conv kernels (kh, kw, in, out): filters j < min(in, out) are the identity on channel j
    (1 at the centre tap), the others uniform(+-1/sqrt(fan_in)) (PyTorch's default)."""

    def __init__(self, seed=None):
        self.seed = seed
        self._base = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=seed)

    def __call__(self, shape, dtype=None):
        if len(shape) != 4:
            raise ValueError(f"PartialDirac initialises 2D conv kernels (kh, kw, in, out). Received: shape={shape}")
        kh, kw, cin, cout = shape
        kernel = self._base(shape, dtype=dtype)
        d = min(cin, cout)
        identity = ops.zeros((kh, kw, cin, d), dtype=kernel.dtype)
        identity = ops.slice_update(identity, (kh // 2, kw // 2, 0, 0),
                                    ops.expand_dims(ops.expand_dims(ops.eye(cin, d, dtype=kernel.dtype), 0), 0))
        return ops.concatenate([identity, kernel[..., d:]], axis=-1)

    def get_config(self):
        return {"seed": self.seed}


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
