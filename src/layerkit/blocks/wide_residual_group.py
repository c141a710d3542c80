"""`WideResidualGroup`: N pre-activation residual blocks at one width (Zagoruyko & Komodakis)."""

import keras

from layerkit.blocks import _args
from layerkit.blocks.conv_block import ConvBlock
from layerkit.blocks.residual import Residual


@keras.saving.register_keras_serializable(package="layerkit")
class WideResidualGroup(ConvBlock):
    """A group of `blocks` pre-activation `Residual` blocks of `filters` channels.

    The first block downsamples by `strides` (and projects the shortcut when the
    width or size changes); the others keep the shape. `dropout` is applied
    between the two convolutions of every block, as in WRN-n-k-dropout.
    """

    def __init__(
        self,
        filters,
        blocks,
        strides=1,
        dropout=0.0,
        kernel_size=3,
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
        self.blocks = _args.positive_int("blocks", blocks)
        self.strides = _args.int_pair("strides", strides)
        self.dropout = _args.fraction("dropout", dropout)
        self.kernel_size = _args.int_pair("kernel_size", kernel_size)

    def build(self, input_shape):
        _args.channels(input_shape, self.data_format, type(self).__name__)
        self.residuals = []
        shape = input_shape
        for i in range(self.blocks):
            block = Residual(
                self.filters,
                kernel_size=self.kernel_size,
                strides=self.strides if i == 0 else 1,
                preactivation=True,
                dropout=self.dropout,
                **self.conv_block_config(),
                dtype=self.dtype_policy,
                name=f"block{i}",
            )
            block.build(shape)
            shape = block.compute_output_shape(shape)
            self.residuals.append(block)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for block in self.residuals:
            x = block(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return _args.same_padded_shape(input_shape, self.filters, self.strides, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            blocks=self.blocks,
            strides=self.strides,
            dropout=self.dropout,
            kernel_size=self.kernel_size,
        )
        return config
