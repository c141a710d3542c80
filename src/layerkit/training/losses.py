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


@keras.saving.register_keras_serializable(package="layerkit")
class NonFiniteStep(keras.metrics.Metric):
    """The first step (from 1) since the last reset whose loss is not finite; 0 while none is.

    It runs inside the compiled step, so watching the loss costs no host sync per step
    (`keras.callbacks.TerminateOnNaN` reads every step's loss on the host); the harness reads it
    at each epoch end (`callbacks.StopOnNonFinite`). After `watch(model)` (a compiled model) it
    watches the loss itself: Keras's running sum of the step losses, updated just before the
    metrics in the same step, turns non-finite at the first non-finite loss (regularisation
    included). Unwatched (a loaded model), it watches the predictions the loss is made from."""

    def __init__(self, name="nonfinite_step", **kwargs):
        super().__init__(name=name, **kwargs)
        self.steps = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="steps")
        self.first = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="first")
        self._loss_sum = None

    def watch(self, model) -> "NonFiniteStep":
        tracker = getattr(model, "_loss_tracker", None)  # Keras's Mean of the step losses, reset each epoch
        total = getattr(tracker, "total", None)
        self._loss_sum = (lambda: total.value) if total is not None else None
        return self

    def update_state(self, y_true, y_pred, sample_weight=None):
        step, first = self.steps.value + 1.0, self.first.value
        bad = ops.logical_not(ops.all(ops.isfinite(y_pred)))
        if self._loss_sum is not None:
            bad = ops.logical_or(bad, ops.logical_not(ops.isfinite(self._loss_sum())))
        self.steps.assign(step)
        self.first.assign(ops.where(ops.logical_and(bad, first == 0), step, first))

    def result(self):
        return ops.convert_to_tensor(self.first)
