"""`Residual`: the residual block of ResNets, Wide ResNets and the AlphaGo Zero tower."""

import keras

from layerkit.blocks import _args
from layerkit.blocks.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="layerkit")
class Residual(ConvBlock):
    """Two convolutions and a shortcut, usable in a plain `keras.Sequential`.

    Post-activation (``preactivation=False``, ResNet v1 and AlphaGo Zero)::

        y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    Pre-activation (``preactivation=True``, ResNet v2 and Wide ResNets)::

        h = relu(bn1(x))
        y = conv2(dropout(relu(bn2(conv1(h))))) + shortcut

    The shortcut is the identity when the shape is kept, otherwise a 1x1 strided
    convolution (followed by BatchNorm in the post-activation form; applied to ``h``
    in the pre-activation form, as Zagoruyko & Komodakis do).

    Args:
        filters: output channels.
        kernel_size: int or pair, size of both convolutions.
        strides: int or pair, stride of the first convolution (and of the shortcut).
        preactivation: BN-ReLU-conv order (True) or conv-BN-ReLU (False).
        dropout: dropout rate between the two convolutions, in [0, 1).
        separable: use depthwise-separable convolutions for the two main convolutions.
        momentum: BatchNorm momentum of the moving statistics.
        epsilon: BatchNorm epsilon.
        kernel_initializer, kernel_regularizer: for every convolution.
        data_format: "channels_last", "channels_first" or None (Keras's global setting).
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        preactivation=False,
        dropout=0.0,
        separable=False,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(momentum=momentum, epsilon=epsilon, kernel_initializer=kernel_initializer,
                         kernel_regularizer=kernel_regularizer, data_format=data_format, **kwargs)
        self.filters = _args.positive_int("filters", filters)
        self.kernel_size = _args.int_pair("kernel_size", kernel_size)
        self.strides = _args.int_pair("strides", strides)
        self.preactivation = bool(preactivation)
        self.dropout = _args.fraction("dropout", dropout)
        self.separable = bool(separable)

    def build(self, input_shape):
        in_channels = _args.channels(input_shape, self.data_format, type(self).__name__)
        self.has_projection = in_channels != self.filters or self.strides != (1, 1)

        self.conv1 = self.make_conv(self.filters, self.kernel_size, self.strides, "conv1", self.separable)
        self.conv2 = self.make_conv(self.filters, self.kernel_size, 1, "conv2", self.separable)
        self.bn1 = self.make_batch_norm("bn1")
        self.bn2 = self.make_batch_norm("bn2")
        mid_shape = self.compute_output_shape(input_shape)

        self.conv1.build(input_shape)
        self.bn1.build(input_shape if self.preactivation else mid_shape)
        self.bn2.build(mid_shape)
        self.conv2.build(mid_shape)
        if self.dropout > 0:
            self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
        if self.has_projection:
            self.shortcut = self.make_conv(self.filters, 1, self.strides, "shortcut")
            self.shortcut.build(input_shape)
            if not self.preactivation:
                self.shortcut_bn = self.make_batch_norm("shortcut_bn")
                self.shortcut_bn.build(mid_shape)
        self.built = True

    # === Forward ===
    def call(self, inputs, training=None):
        relu = keras.ops.relu
        if self.preactivation:
            h = relu(self.bn1(inputs, training=training))
            shortcut = self.shortcut(h) if self.has_projection else inputs
            y = relu(self.bn2(self.conv1(h), training=training))
            if self.dropout > 0:
                y = self.drop(y, training=training)
            return self.conv2(y) + shortcut
        shortcut = inputs
        if self.has_projection:
            shortcut = self.shortcut_bn(self.shortcut(inputs), training=training)
        y = relu(self.bn1(self.conv1(inputs), training=training))
        y = self.bn2(self.conv2(y), training=training)
        return relu(y + shortcut)

    def compute_output_shape(self, input_shape):
        return _args.same_padded_shape(input_shape, self.filters, self.strides, self.data_format)

    # === Config ===
    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            preactivation=self.preactivation,
            dropout=self.dropout,
            separable=self.separable,
        )
        return config
