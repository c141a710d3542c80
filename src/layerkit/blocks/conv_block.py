"""`ConvBlock`: the base of layerkit's convolutional blocks.

It holds the settings every block shares — BatchNorm momentum and epsilon, the
kernel initializer and regularizer, the data format — checks them once, makes the
convolution and BatchNorm sublayers from them, and puts them in the config.
"""

import keras

from layerkit.blocks import _args


class ConvBlock(keras.layers.Layer):
    """Base class: shared convolution/BatchNorm settings, sublayer factories and config."""

    def __init__(
        self,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.momentum = _args.momentum("momentum", momentum)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a number > 0. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.data_format = _args.data_format(data_format)
        self._channel_axis = -1 if self.data_format == "channels_last" else 1

    # === Sublayers ===
    def make_conv(self, filters, kernel_size, strides=1, name=None, separable=False,
                  use_bias=False, conv_class=keras.layers.Conv2D):
        """A 'same'-padded convolution (depthwise-separable if `separable`) with the block's settings."""
        common = dict(
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            padding="same",
            use_bias=use_bias,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name=name,
        )
        if separable:
            return keras.layers.SeparableConv2D(
                depthwise_initializer=self.kernel_initializer,
                pointwise_initializer=self.kernel_initializer,
                depthwise_regularizer=self.kernel_regularizer,
                pointwise_regularizer=self.kernel_regularizer,
                **common,
            )
        return conv_class(
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            **common,
        )

    def make_batch_norm(self, name, bn_class=keras.layers.BatchNormalization):
        return bn_class(
            axis=self._channel_axis,
            momentum=self.momentum,
            epsilon=self.epsilon,
            dtype=self.dtype_policy,
            name=name,
        )

    def conv_block_config(self) -> dict:
        """The shared settings, as `get_config` entries (for blocks that pass them on)."""
        return dict(
            momentum=self.momentum,
            epsilon=self.epsilon,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            data_format=self.data_format,
        )

    # === Config ===
    def get_config(self):
        config = super().get_config()
        config.update(
            momentum=self.momentum,
            epsilon=self.epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            data_format=self.data_format,
        )
        return config
