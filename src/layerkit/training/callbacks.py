"""Callbacks that make a run leave a record and stop cleanly (checkpoints: `checkpoints.py`)."""

import sys
import time

import keras
import numpy as np

from layerkit.training.events import EventWriter


class RunLogger(keras.callbacks.Callback):
    """Adds ``lr`` (per batch and epoch) and ``images_per_sec`` / ``epoch_seconds`` to the logs.

    Put it first in the callback list so CSV, TensorBoard and the progress bar see them.
    """

    def __init__(self, images_per_step):
        super().__init__()
        self.images_per_step = images_per_step

    def _lr(self):
        # the optimizer evaluates its schedule at its own step counter
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._start_step = int(self.model.optimizer.iterations.numpy())
        self._epoch_lr = self._lr()

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None:  # shown by the progress bar
            logs["lr"] = self._lr()
            seconds = time.perf_counter() - self._start
            logs["images_per_sec"] = (batch + 1) * self.images_per_step / max(seconds, 1e-9)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = time.perf_counter() - self._start
        steps = int(self.model.optimizer.iterations.numpy()) - self._start_step
        logs["lr"] = self._epoch_lr  # the lr the epoch started with
        logs["images_per_sec"] = steps * self.images_per_step / max(seconds, 1e-9)
        logs["epoch_seconds"] = seconds


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras's CSVLogger, with epochs counted from 1 as in TensorBoard, state.json and the report."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class TensorBoardLogger(keras.callbacks.Callback):
    """Epoch scalars into a TensorBoard event file (no TensorFlow needed)."""

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            self.writer = EventWriter(self.logdir)
        self.writer.scalars(epoch + 1, logs or {})


class GracefulStop(keras.callbacks.Callback):
    """Stops training at the end of the epoch in which a stop was requested
    (`layerkit.training.stop.StopSignals`).

    With several JAX processes, the processes agree at every epoch end (one tiny all-gather):
    a signal that reached any of them stops all of them after the same epoch, so none is left
    waiting in a collective for the others.
    """

    def __init__(self, signals):
        super().__init__()
        self.signals = signals
        self.stopped = False

    def on_epoch_end(self, epoch, logs=None):
        if self._any_process_requested():
            self.model.stop_training = True
            self.stopped = True

    def _any_process_requested(self) -> bool:
        # Decide on the flags as gathered, never on a flag read after the gather: a signal
        # that lands while a process waits in it counts at the next epoch end, for all alike.
        requested = self.signals.requested
        if keras.backend.backend() == "jax":
            import jax

            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                flags = multihost_utils.process_allgather(np.array([requested], np.int32))
                if np.asarray(flags).any() and not requested:
                    print("\nlayerkit: another process was asked to stop; stopping after this epoch.",
                          file=sys.stderr, flush=True)
                return bool(np.asarray(flags).any())
        return requested
