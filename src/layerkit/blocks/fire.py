"""`Fire`: SqueezeNet's fire module (Iandola et al. 2016), as in the Keras flowers lab."""

import keras

from layerkit.blocks import _args
from layerkit.blocks.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="layerkit")
class Fire(ConvBlock):
    """1x1 squeeze convolution, then 1x1 and 3x3 expand convolutions, concatenated.

    Each expand branch has ``expand // 2`` filters, so the output has ``expand``
    channels. With ``batch_norm=True`` every convolution is followed by BatchNorm
    (no conv bias) before its ReLU; the flowers lab uses ``momentum=0.9``.
    ``separable=True`` makes the 3x3 expand a depthwise-separable convolution.
    """

    def __init__(
        self,
        squeeze,
        expand,
        batch_norm=False,
        momentum=0.9,
        epsilon=1e-3,
        separable=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(momentum=momentum, epsilon=epsilon, kernel_initializer=kernel_initializer,
                         kernel_regularizer=kernel_regularizer, data_format=data_format, **kwargs)
        self.squeeze = _args.positive_int("squeeze", squeeze)
        self.expand = _args.positive_int("expand", expand)
        if self.expand % 2:
            raise ValueError(
                "`expand` must be even: it is split equally between the 1x1 and 3x3 "
                f"branches. Received: expand={expand!r}"
            )
        self.batch_norm = bool(batch_norm)
        self.separable = bool(separable)

    def build(self, input_shape):
        _args.channels(input_shape, self.data_format, type(self).__name__)
        half = self.expand // 2
        bias = not self.batch_norm
        self.squeeze_conv = self.make_conv(self.squeeze, 1, 1, "squeeze", use_bias=bias)
        self.expand1_conv = self.make_conv(half, 1, 1, "expand1x1", use_bias=bias)
        self.expand3_conv = self.make_conv(half, 3, 1, "expand3x3", self.separable, use_bias=bias)
        squeezed = _args.same_padded_shape(input_shape, self.squeeze, (1, 1), self.data_format)
        self.squeeze_conv.build(input_shape)
        self.expand1_conv.build(squeezed)
        self.expand3_conv.build(squeezed)
        if self.batch_norm:
            self.bns = []
            for name, filters in (("squeeze_bn", self.squeeze), ("expand1x1_bn", half),
                                  ("expand3x3_bn", half)):
                bn = self.make_batch_norm(name)
                bn.build(_args.same_padded_shape(input_shape, filters, (1, 1), self.data_format))
                self.bns.append(bn)
        self.built = True

    def _conv_bn_relu(self, conv, index, x, training):
        x = conv(x)
        if self.batch_norm:
            x = self.bns[index](x, training=training)
        return keras.ops.relu(x)

    def call(self, inputs, training=None):
        s = self._conv_bn_relu(self.squeeze_conv, 0, inputs, training)
        e1 = self._conv_bn_relu(self.expand1_conv, 1, s, training)
        e3 = self._conv_bn_relu(self.expand3_conv, 2, s, training)
        return keras.ops.concatenate([e1, e3], axis=self._channel_axis)

    def compute_output_shape(self, input_shape):
        return _args.same_padded_shape(input_shape, self.expand, (1, 1), self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(
            squeeze=self.squeeze,
            expand=self.expand,
            batch_norm=self.batch_norm,
            separable=self.separable,
        )
        return config
