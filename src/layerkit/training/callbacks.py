"""Callbacks that make a run leave a record and stop cleanly (checkpoints: `checkpoints.py`)."""

import sys
import time

import keras
import numpy as np

from layerkit.training.events import EventWriter


class RunLogger(keras.callbacks.Callback):
    """Adds ``lr``, ``images_per_sec`` and ``epoch_seconds`` to each epoch's logs, with no
    work per step.

    The lr is the schedule's value at the epoch's first step, computed on the host from the
    step count (`steps_per_epoch` x epoch): reading the optimizer's lr would make the host wait
    for the device and, done per batch, would turn off Keras's asynchronous callback dispatch
    (it reads `self.model`, which syncs the JAX state). Put it first in the callback list so
    CSV and TensorBoard see its keys.
    """

    def __init__(self, images_per_step: int, steps_per_epoch: int, learning_rate):
        super().__init__()
        self.images_per_step = images_per_step
        self.steps_per_epoch = steps_per_epoch
        self.learning_rate = learning_rate  # a float or a LearningRateSchedule

    def lr_at(self, step: int) -> float:
        lr = self.learning_rate
        if callable(lr):
            lr = lr(step)
        return float(keras.ops.convert_to_numpy(lr))

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch_lr = self.lr_at(epoch * self.steps_per_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = time.perf_counter() - self._start
        logs["lr"] = self._epoch_lr  # the lr the epoch started with
        logs["images_per_sec"] = self.steps_per_epoch * self.images_per_step / max(seconds, 1e-9)
        logs["epoch_seconds"] = seconds


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras's CSVLogger, with epochs counted from 1 as in TensorBoard, state.json and the
    report. Without validation it writes no ``val_`` columns (Keras's adds a ``val_`` twin of
    every key, all "NA", when the first epoch has none)."""

    def __init__(self, filename, validation: bool = True, append=False):
        super().__init__(filename, append=append)
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        if not self.validation and self.keys is None and logs:
            self.keys = sorted(logs.keys())
        super().on_epoch_end(epoch + 1, logs)


class TensorBoardLogger(keras.callbacks.Callback):
    """Epoch scalars into a TensorBoard event file (no TensorFlow needed), a new file each session."""

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self.writer = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.writer is None:  # this session's first epoch (after a resume: the one after the last checkpoint)
            self.writer = EventWriter(self.logdir, first_step=epoch + 1)

    def on_epoch_end(self, epoch, logs=None):
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
