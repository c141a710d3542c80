"""`Preprocessing`: a pretrained backbone's input transform inside the model (pixels 0..255 in)."""

import keras


# mode -> (what the backbone was trained on, from pixels x in 0..255)
MODES = {
    "tf": "x / 127.5 - 1 (Xception, Inception, MobileNetV2)",
    "lite": "(x - 127) / 128 (TensorFlow's EfficientNet-Lite)",
    "caffe": "RGB to BGR, minus the ImageNet BGR mean 103.939, 116.779, 123.68 (ResNet50 v1, VGG)",
    "none": "x unchanged (Keras's EfficientNet and MobileNetV3 preprocess inside themselves)",
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="layerkit")
class Preprocessing(keras.layers.Layer):
    """Pixels (0..255, RGB, channels last) to what a pretrained backbone expects: see `MODES`.

    Kept in the model so that ``predict``, the ``.keras`` file and the ONNX export all take
    pixels, as every layerkit model does."""

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {', '.join(MODES)}. Received: mode={mode!r}")
        self.mode = mode

    def call(self, x):
        x = keras.ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
