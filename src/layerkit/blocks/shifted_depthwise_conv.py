"""`ShiftedDepthwiseConv2D`: a depthwise convolution computed as k*k shifted multiply-adds."""

import keras

from layerkit.blocks import _args


@keras.saving.register_keras_serializable(package="layerkit")
class ShiftedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` (channels last, depth multiplier 1, no dilation), the same
    weights and outputs, computed as the sum over the k*k kernel taps of a strided slice of the
    padded input times that tap's per-channel weight.

    Why: XLA:CPU runs a grouped convolution (``feature_group_count`` = channels) several times
    slower than these fused elementwise products: EfficientNet-Lite0's depthwise layers at 192 px,
    batch 32, took 4.6 s as convolutions and 0.78 s as shifted sums (docs/benchmarks.md). The
    slices use TensorFlow's "same" padding (the odd pixel at the bottom and right), as Keras does.
    """

    def __init__(self, kernel_size, strides=1, padding="same", **kwargs):
        for key, bad in (("depth_multiplier", 1), ("dilation_rate", 1)):
            if kwargs.get(key, bad) not in (bad, (bad, bad), [bad, bad]):
                raise ValueError(f"ShiftedDepthwiseConv2D supports {key}=1 only. Received: {key}={kwargs[key]!r}")
        if kwargs.get("data_format") not in (None, "channels_last"):
            raise ValueError("ShiftedDepthwiseConv2D supports data_format='channels_last' only. "
                             f"Received: data_format={kwargs['data_format']!r}")
        _args.int_pair("kernel_size", kernel_size)
        kwargs["data_format"] = "channels_last"
        super().__init__(kernel_size, strides=strides, padding=padding, **kwargs)

    def call(self, inputs):
        kh, kw = self.kernel_size
        sh, sw = self.strides
        h, w = inputs.shape[1], inputs.shape[2]
        if self.padding == "same":
            oh, ow = -(-h // sh), -(-w // sw)
            ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
            x = keras.ops.pad(inputs, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        else:
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
            x = inputs
        kernel = keras.ops.cast(self.kernel, x.dtype)
        out = None
        for i in range(kh):
            for j in range(kw):
                tap = x[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :] * kernel[i, j, :, 0]
                out = tap if out is None else out + tap
        if self.use_bias:
            out = out + keras.ops.cast(self.bias, out.dtype)
        return self.activation(out) if self.activation is not None else out
