"""Callbacks that make a run leave a record and survive a crash."""

import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from layerkit.training.events import EventWriter


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def seed_states(model) -> list:
    """The counters of every random seed generator in `model` (not kept by `.keras` files)."""
    return [keras.ops.convert_to_numpy(v).tolist() for v in model.non_trainable_variables
            if v.path.endswith("seed_generator_state")]


def restore_seed_states(model, states) -> None:
    variables = [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]
    if len(variables) != len(states):
        raise ValueError(f"checkpoint has {len(states)} random-generator states, the model {len(variables)}")
    for v, s in zip(variables, states):
        v.assign(np.asarray(s, dtype=v.dtype))


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
    """First Ctrl-C: finish the epoch, checkpoint, stop. Second Ctrl-C: stop at once
    (the last completed epoch's checkpoint stays).

    With several JAX processes, the processes agree at every epoch end (one tiny all-gather):
    a signal that reached any of them stops all of them after the same epoch, so none is left
    waiting in a collective for the others.
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nlayerkit: stopping after this epoch (its checkpoint will be saved); "
              "Ctrl-C again to stop now.", file=sys.stderr, flush=True)

    def on_train_begin(self, logs=None):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None

    def on_epoch_end(self, epoch, logs=None):
        if self._any_process_requested():
            self.model.stop_training = True

    def _any_process_requested(self) -> bool:
        # Decide on the flags as gathered, never on a flag read after the gather: a signal
        # that lands while a process waits in it counts at the next epoch end, for all alike.
        requested = self.requested
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

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Checkpoints(keras.callbacks.Callback):
    """Best and last `.keras` checkpoints plus ``state.json``, each written atomically.

    ``state.json`` is written last and names the epochs completed, so a crash at any
    moment leaves either the previous consistent state or the new one. A failed write
    (disk full, permissions) leaves the previous checkpoint intact and says so.
    """

    def __init__(self, workdir, monitor="val_accuracy", mode="max", extra_state=None):
        super().__init__()
        self.workdir = Path(workdir)
        self.monitor = monitor
        self.mode = mode
        self.extra_state = extra_state or (lambda: {})
        self.best = None
        self.best_epoch = None
        self.write_failures = 0

    def restore(self, state: dict) -> None:
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")

    def _improved(self, value) -> bool:
        if value is None or not np.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def _save_model(self, name: str) -> None:
        final = self.workdir / name
        tmp = self.workdir / f".{name}.tmp{os.getpid()}.keras"
        try:
            self.model.save(tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        improved = self._improved(value)
        try:
            self._save_model("last.keras")
            if improved:
                self._save_model("best.keras")
                self.best, self.best_epoch = float(value), epoch + 1
            state = {
                "epochs_completed": epoch + 1,
                "best": self.best,
                "best_epoch": self.best_epoch,
                "monitor": self.monitor,
                "seed_states": seed_states(self.model),
                "time": time.time(),
                **self.extra_state(),
            }
            atomic_write_text(self.workdir / "state.json", json.dumps(state, indent=1))
        except OSError as err:
            self.write_failures += 1
            warnings.warn(
                f"checkpoint of epoch {epoch + 1} NOT written ({type(err).__name__}: {err}); "
                "the previous checkpoint is intact and training continues.",
                stacklevel=2,
            )
