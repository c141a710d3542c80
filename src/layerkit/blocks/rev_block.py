"""`RevBlock`: the reversible residual block of RevNets (Gomez et al. 2017).

The channels are split in two halves, x = (x1, x2), and::

    y1 = x1 + F(x2)
    y2 = x2 + G(y1)

so that the input is recovered from the output: x2 = y2 - G(y1), x1 = y1 - F(x2).
F and G are `ResidualFunction`s: pre-activation BN-ReLU-conv stacks as in the paper's
code (two 3x3 convolutions, or 1x1 -> 3x3 -> 1x1 with ``bottleneck=True``).
"""

import functools

import keras

from layerkit.blocks import _args
from layerkit.blocks.conv_block import ConvBlock


class _BatchNormalization(keras.layers.BatchNormalization):
    """Keras BatchNormalization that keeps float64 inputs in float64.

    Keras 3.15 computes BatchNormalization in ``result_type(dtype, "float32")``, which is
    float32 even for float64 inputs; that would cap the float64 check of the reversible
    gradients at float32 accuracy. Other dtypes go to Keras's own `call` unchanged.
    """

    def call(self, inputs, training=None, mask=None):
        if keras.backend.standardize_dtype(inputs.dtype) != "float64" or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        ops = keras.ops
        moving_mean = ops.cast(self.moving_mean, "float64")
        moving_variance = ops.cast(self.moving_variance, "float64")
        if training and self.trainable:
            mean, variance = self._moments(inputs, mask)
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        else:
            mean, variance = moving_mean, moving_variance
        outputs = ops.batch_normalization(
            inputs, mean, variance, axis=self.axis,
            offset=ops.cast(self.beta, "float64") if self.center else None,
            scale=ops.cast(self.gamma, "float64") if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)


@functools.cache
def _jax_same_conv():
    """A stride-1 'same' NHWC/HWIO convolution whose gradients are canonical convolutions.

    JAX writes a convolution's gradients as convolutions with permuted dimension labels.
    Outside loops XLA:CPU rewrites them into its fast canonical form; inside the
    `lax.scan` of `ReversibleStack` it does not, and they ran ~15x slower (measured:
    a 4-block scan of conv VJPs, 8x32x32x16, 368 ms vs 24 ms on 2 CPU cores). Here
    the transposes are explicit, so every convolution is NHWC x HWIO -> NHWC.
    """
    import jax
    import jax.numpy as jnp

    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn)

    @jax.custom_vjp
    def same_conv(x, k):
        return conv(x, k)

    def fwd(x, k):
        return conv(x, k), (x, k)

    def bwd(residuals, dy):
        x, k = residuals
        kh, kw = k.shape[:2]
        dx = conv(dy, jnp.flip(k, (0, 1)).swapaxes(2, 3))
        # dk[a, b, i, o] = sum over n, h, w of x_padded[n, h + a, w + b, i] * dy[n, h, w, o]:
        # a convolution of x as (i, H, W, n) with dy as an (H, W, n, o) kernel.
        pad = ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
        dk = jax.lax.conv_general_dilated(
            jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)), (1, 1), pad,
            dimension_numbers=dn,
        )
        return dx, jnp.transpose(dk, (1, 2, 0, 3)).astype(k.dtype)

    same_conv.defvjp(fwd, bwd)
    return same_conv


class _Conv2D(keras.layers.Conv2D):
    """Conv2D whose stride-1 'same' channels-last convolution uses `_jax_same_conv` on JAX."""

    def convolution_op(self, inputs, kernel):
        if (
            keras.backend.backend() != "jax"
            or self.strides != (1, 1)
            or self.dilation_rate != (1, 1)
            or self.groups != 1
            or self.padding != "same"
            or self.data_format != "channels_last"
            or any(size % 2 == 0 for size in self.kernel_size)
        ):
            return super().convolution_op(inputs, kernel)
        ops = keras.ops
        return _jax_same_conv()(ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="layerkit")
class ResidualFunction(ConvBlock):
    """F or G of a `RevBlock`: a residual branch without its shortcut.

    Basic (``bottleneck=False``): BN-ReLU-conv3x3(strides) -> BN-ReLU-conv3x3.
    Bottleneck: BN-ReLU-conv1x1(filters/4) -> BN-ReLU-conv3x3(filters/4, strides) ->
    BN-ReLU-conv1x1(filters).

    Args:
        filters: output channels (divisible by 4 when ``bottleneck=True``).
        strides: int or pair, stride of the first 3x3 convolution.
        bottleneck: the three-convolution bottleneck form.
        momentum, epsilon: BatchNorm settings.
        kernel_initializer, kernel_regularizer: for every convolution.
        data_format: "channels_last", "channels_first" or None (Keras's global setting).
    """

    def __init__(
        self,
        filters,
        strides=1,
        bottleneck=False,
        momentum=0.9,
        epsilon=1e-5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(momentum=momentum, epsilon=epsilon, kernel_initializer=kernel_initializer,
                         kernel_regularizer=kernel_regularizer, data_format=data_format, **kwargs)
        self.filters = _args.positive_int("filters", filters)
        self.strides = _args.int_pair("strides", strides)
        self.bottleneck = bool(bottleneck)
        if self.bottleneck and self.filters % 4:
            raise ValueError(
                "With `bottleneck=True`, `filters` must be divisible by 4. "
                f"Received: filters={filters!r}"
            )

    def _specs(self):
        """(filters, kernel size, strides) of each convolution, in order."""
        if self.bottleneck:
            inner = self.filters // 4
            return [(inner, 1, (1, 1)), (inner, 3, self.strides), (self.filters, 1, (1, 1))]
        return [(self.filters, 3, self.strides), (self.filters, 3, (1, 1))]

    def build(self, input_shape):
        _args.channels(input_shape, self.data_format, type(self).__name__)
        self.norms, self.convs = [], []
        shape = input_shape
        for i, (filters, kernel_size, strides) in enumerate(self._specs(), start=1):
            bn = self.make_batch_norm(f"bn{i}", bn_class=_BatchNormalization)
            conv = self.make_conv(filters, kernel_size, strides, f"conv{i}", conv_class=_Conv2D)
            bn.build(shape)
            conv.build(shape)
            shape = _args.same_padded_shape(shape, filters, strides, self.data_format)
            self.norms.append(bn)
            self.convs.append(conv)
        self.built = True

    def call(self, inputs, training=None):
        h = inputs
        for bn, conv in zip(self.norms, self.convs):
            h = conv(keras.ops.relu(bn(h, training=training)))
        return h

    def compute_output_shape(self, input_shape):
        return _args.same_padded_shape(input_shape, self.filters, self.strides, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            bottleneck=self.bottleneck,
        )
        return config


@keras.saving.register_keras_serializable(package="layerkit")
class RevBlock(ConvBlock):
    """A reversible residual block: y1 = x1 + F(x2), y2 = x2 + G(y1).

    With ``strides=1`` and as many input channels as `filters` the block is invertible
    (`inverse`). Otherwise it is the paper's non-reversible transition block between
    stages: F is strided and widens, and each half's shortcut is downsampled — by
    average pooling and zero-padding of the channels (basic form, no parameters), or by a
    strided 1x1 convolution (bottleneck form), as in the paper's code.

    Args:
        filters: output channels of the block, both halves together (even; divisible by 8
            when ``bottleneck=True``).
        strides: int or pair, the stride of F and of the shortcuts.
        bottleneck: F and G are 1x1 -> 3x3 -> 1x1 bottlenecks of width filters/8.
        momentum, epsilon: BatchNorm settings of F and G.
        kernel_initializer, kernel_regularizer: for every convolution.
        data_format: "channels_last", "channels_first" or None (Keras's global setting).
    """

    def __init__(
        self,
        filters,
        strides=1,
        bottleneck=False,
        momentum=0.9,
        epsilon=1e-5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(momentum=momentum, epsilon=epsilon, kernel_initializer=kernel_initializer,
                         kernel_regularizer=kernel_regularizer, data_format=data_format, **kwargs)
        self.filters = _args.positive_int("filters", filters)
        self.bottleneck = bool(bottleneck)
        multiple = 8 if self.bottleneck else 2
        if self.filters % multiple:
            raise ValueError(
                f"`filters` must be divisible by {multiple} (two halves"
                f"{', each a bottleneck of 4' if self.bottleneck else ''}). "
                f"Received: filters={filters!r}"
            )
        self.strides = _args.int_pair("strides", strides)

    # === Layers ===
    def _function(self, strides, name):
        return ResidualFunction(
            self.filters // 2,
            strides=strides,
            bottleneck=self.bottleneck,
            **self.conv_block_config(),
            dtype=self.dtype_policy,
            name=name,
        )

    def _half_shape(self, shape, channels):
        shape = list(shape)
        shape[self._channel_axis] = channels
        return tuple(shape)

    def build(self, input_shape):
        in_channels = _args.channels(input_shape, self.data_format, type(self).__name__)
        if in_channels % 2:
            raise ValueError(
                "RevBlock splits its input channels in two halves: the input needs an even "
                f"channel count. Received input shape: {tuple(input_shape)}"
            )
        if in_channels > self.filters:
            raise ValueError(
                f"RevBlock cannot narrow its input: `filters` must be >= the input channels "
                f"({in_channels}). Received: filters={self.filters}"
            )
        self.in_channels = in_channels
        self.reversible = self.strides == (1, 1) and in_channels == self.filters
        half_in = self._half_shape(input_shape, in_channels // 2)
        half_out = self._half_shape(self.compute_output_shape(input_shape), self.filters // 2)
        self.f = self._function(self.strides, "f")
        self.g = self._function(1, "g")
        self.f.build(half_in)
        self.g.build(half_out)
        self.projections = []
        if not self.reversible and self.bottleneck:
            for i in (1, 2):
                proj = self.make_conv(self.filters // 2, 1, self.strides, f"project{i}")
                proj.build(half_in)
                self.projections.append(proj)
        elif not self.reversible and self.strides != (1, 1):
            self.pool = keras.layers.AveragePooling2D(
                self.strides, strides=self.strides, padding="same",
                data_format=self.data_format, dtype=self.dtype_policy, name="pool",
            )
        self.built = True

    # === Forward ===
    def split(self, x):
        """The two channel halves of `x`."""
        return keras.ops.split(x, 2, axis=self._channel_axis)

    def merge(self, x1, x2):
        return keras.ops.concatenate([x1, x2], axis=self._channel_axis)

    def _shortcut(self, x, index):
        if self.reversible:
            return x
        if self.projections:
            return self.projections[index](x)
        if self.strides != (1, 1):
            x = self.pool(x)
        pad = self.filters // 2 - self.in_channels // 2
        if pad:
            widths = [[0, 0]] * 4
            widths[self._channel_axis] = [pad // 2, pad - pad // 2]
            x = keras.ops.pad(x, widths)
        return x

    def call(self, inputs, training=None):
        x1, x2 = self.split(inputs)
        y1 = self._shortcut(x1, 0) + self.f(x2, training=training)
        y2 = self._shortcut(x2, 1) + self.g(y1, training=training)
        return self.merge(y1, y2)

    def inverse(self, outputs, training=False):
        """The input that gives `outputs`: x2 = y2 - G(y1), x1 = y1 - F(x2)."""
        if not self.reversible:
            raise ValueError(
                f"RevBlock '{self.name}' changes the shape (strides={self.strides}, "
                f"{self.in_channels} -> {self.filters} channels) and has no inverse."
            )
        y1, y2 = self.split(outputs)
        x2 = y2 - self.g(y1, training=training)
        x1 = y1 - self.f(x2, training=training)
        return self.merge(x1, x2)

    def compute_output_shape(self, input_shape):
        return _args.same_padded_shape(input_shape, self.filters, self.strides, self.data_format)

    # === Config ===
    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            bottleneck=self.bottleneck,
        )
        return config
