"""`Bottleneck`: the pre-activation bottleneck block of ResNet-164 (He et al. 2016)."""

import keras

from layerkit.blocks import _args
from layerkit.blocks.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="layerkit")
class Bottleneck(ConvBlock):
    """A pre-activation bottleneck block, 1x1 -> 3x3 -> 1x1, with a shortcut.

    After "Identity Mappings in Deep Residual Networks" (He et al. 2016)::

        h = relu(bn1(x))
        shortcut = x                          (shape kept)
                 = conv1x1_strided(h)         (width or size changes)
        y = conv1(h)                          1x1, `filters` channels
        y = conv2(relu(bn2(y)))               3x3, `filters` channels, stride `strides`
        y = conv3(relu(bn3(y))) + shortcut    1x1, `filters * expansion` channels

    Args:
        filters: width of the bottleneck; the block outputs `filters * expansion` channels.
        strides: int or pair, stride of the 3x3 convolution (and of the shortcut).
        expansion: output channels per bottleneck channel (4 in ResNet-164).
        momentum: BatchNorm momentum of the moving statistics.
        epsilon: BatchNorm epsilon.
        kernel_initializer, kernel_regularizer: for every convolution.
        data_format: "channels_last", "channels_first" or None (Keras's global setting).
    """

    def __init__(
        self,
        filters,
        strides=1,
        expansion=4,
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
        self.expansion = _args.positive_int("expansion", expansion)

    @property
    def output_filters(self):
        return self.filters * self.expansion

    def build(self, input_shape):
        in_channels = _args.channels(input_shape, self.data_format, type(self).__name__)
        self.has_projection = in_channels != self.output_filters or self.strides != (1, 1)
        inner = _args.same_padded_shape(input_shape, self.filters, (1, 1), self.data_format)
        inner_strided = _args.same_padded_shape(
            input_shape, self.filters, self.strides, self.data_format
        )

        self.bn1 = self.make_batch_norm("bn1")
        self.conv1 = self.make_conv(self.filters, 1, 1, "conv1")
        self.bn2 = self.make_batch_norm("bn2")
        self.conv2 = self.make_conv(self.filters, 3, self.strides, "conv2")
        self.bn3 = self.make_batch_norm("bn3")
        self.conv3 = self.make_conv(self.output_filters, 1, 1, "conv3")
        self.bn1.build(input_shape)
        self.conv1.build(input_shape)
        self.bn2.build(inner)
        self.conv2.build(inner)
        self.bn3.build(inner_strided)
        self.conv3.build(inner_strided)
        if self.has_projection:
            self.shortcut = self.make_conv(self.output_filters, 1, self.strides, "shortcut")
            self.shortcut.build(input_shape)
        self.built = True

    # === Forward ===
    def call(self, inputs, training=None):
        relu = keras.ops.relu
        h = relu(self.bn1(inputs, training=training))
        shortcut = self.shortcut(h) if self.has_projection else inputs
        y = self.conv1(h)
        y = self.conv2(relu(self.bn2(y, training=training)))
        y = self.conv3(relu(self.bn3(y, training=training)))
        return y + shortcut

    def compute_output_shape(self, input_shape):
        return _args.same_padded_shape(
            input_shape, self.output_filters, self.strides, self.data_format
        )

    # === Config ===
    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            expansion=self.expansion,
        )
        return config
