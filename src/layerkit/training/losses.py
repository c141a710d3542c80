"""Losses the harness needs beyond Keras's own."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="layerkit")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse (integer-label) cross-entropy with label smoothing, which Keras's
    sparse loss lacks: the target is ``(1 - s) * one_hot + s / num_classes``."""

    def __init__(self, label_smoothing=0.0, from_logits=False, name="sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"`label_smoothing` must be in [0, 1). Received: {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        num_classes = ops.shape(y_pred)[-1]
        target = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), num_classes, dtype=y_pred.dtype)
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        return keras.losses.categorical_crossentropy(target, y_pred, from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing, from_logits=self.from_logits)
        return config
