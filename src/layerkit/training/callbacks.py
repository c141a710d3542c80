"""Callbacks that make a run leave a record and stop cleanly (checkpoints: `checkpoints.py`)."""

import contextlib
import math
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from layerkit.training.checkpoints import run_write
from layerkit.training.events import EventWriter
from layerkit.training.stop import diverged


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
        steps = (self.params or {}).get("steps") or self.steps_per_epoch  # this fit's: fewer in a resumed partial epoch
        logs["lr"] = self._epoch_lr  # the lr the epoch started with
        logs["images_per_sec"] = steps * self.images_per_step / max(seconds, 1e-9)
        logs["epoch_seconds"] = seconds


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras's CSVLogger, with epochs counted from 1 as in TensorBoard, state.json and the
    report. Without validation it writes no ``val_`` columns (Keras's adds a ``val_`` twin of
    every key, all "NA", when the first epoch has none)."""

    def __init__(self, filename, validation: bool = True, append=False):
        super().__init__(filename, append=append)
        self.validation = validation
        self.workdir = Path(filename).parent

    def on_train_begin(self, logs=None):
        with run_write(self.workdir, "history.csv"):
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self.validation and self.keys is None and logs:
            self.keys = sorted(logs.keys())
        with run_write(self.workdir, "history.csv"):
            super().on_epoch_end(epoch + 1, logs)


class TensorBoardLogger(keras.callbacks.Callback):
    """Epoch scalars into a TensorBoard event file (no TensorFlow needed), a new file each session."""

    def __init__(self, logdir):
        super().__init__()
        self.logdir = logdir
        self.writer = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.writer is None:  # this session's first epoch (after a resume: the one after the last checkpoint)
            with run_write(Path(self.logdir).parent, "the TensorBoard events"):
                self.writer = EventWriter(self.logdir, first_step=epoch + 1)

    def on_epoch_end(self, epoch, logs=None):
        with run_write(Path(self.logdir).parent, "the TensorBoard events"):
            self.writer.scalars(epoch + 1, logs or {})


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops the run with `DivergedError` at the end of an epoch whose loss was not finite,
    before anything records or saves it: put it first. The step comes from the compiled
    `losses.NonFiniteStep` metric (``nonfinite_step``), which this callback takes out of the
    logs so that no record or progress line shows it. No host work per step."""

    KEY = "nonfinite_step"
    async_safe = True  # its batch hooks only drop a key from the logs

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None:
            logs.pop(self.KEY, None)

    def on_test_batch_end(self, batch, logs=None):
        if logs is not None:
            logs.pop(self.KEY, None)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        step = int(logs.pop(self.KEY, 0) or 0)
        val_step = int(logs.pop("val_" + self.KEY, 0) or 0)
        loss = logs.get("loss")
        if step or (loss is not None and not math.isfinite(float(loss))):
            where = f"step {step} of epoch {epoch + 1}" if step else f"epoch {epoch + 1} (step not known)"
            raise diverged(f"the training loss became {_value(loss)} at {where}", epoch + 1, step or None)
        if val_step:
            raise diverged(f"the validation loss is not finite after the last step of epoch {epoch + 1} (its "
                           "weights overflow)", epoch + 1, None)


def _value(loss) -> str:
    return "not finite" if loss is None else f"{float(loss)}"


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


# === Progress ===

PROGRESS_ENV = "LAYERKIT_PROGRESS_SECONDS"  # seconds between progress lines when stdout is no terminal
PROGRESS_SECONDS = 20.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Heartbeat:
    """Progress lines on stdout for output that is no terminal (a log file, a CI job, a notebook):
    while a phase runs (an epoch, the final evaluation, TTA, the report), a line every
    `interval` seconds with its step, images/s, time elapsed and the estimated time left.

    A daemon thread prints them, so a line comes also while a step compiles or a plot is drawn;
    the callbacks only count steps (no work on the device, no wait for it). `interval`: default
    ``$LAYERKIT_PROGRESS_SECONDS`` or 20 s; on a terminal Keras's progress bar shows the same.
    """

    def __init__(self, interval: float | None = None, stream=None):
        import threading

        if interval is None:
            interval = os.environ.get(PROGRESS_ENV, PROGRESS_SECONDS)
        given = interval
        try:
            interval = float(interval)
        except ValueError:
            interval = None
        if interval is None or not interval > 0:
            raise ValueError(f"{PROGRESS_ENV} must be a number of seconds > 0. Received: {given!r}")
        self.interval = interval
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._phase = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="layerkit-progress", daemon=True)
        self._thread.start()

    @classmethod
    def for_stdout(cls) -> "Heartbeat | None":
        """A heartbeat when stdout is no terminal (or $LAYERKIT_PROGRESS_SECONDS is set), else None."""
        if sys.stdout.isatty() and PROGRESS_ENV not in os.environ:
            return None
        return cls()

    def begin(self, name: str, total: int | None = None, images_per_step: int | None = None, unit="step"):
        with self._lock:
            self._phase = {"name": name, "total": total, "per_step": images_per_step, "unit": unit,
                           "done": 0, "start": time.monotonic(), "printed": time.monotonic()}

    def advance(self, done: int) -> None:
        phase = self._phase
        if phase is not None:
            phase["done"] = max(done, phase["done"])

    def then(self, what: str) -> None:
        """Name what the phase does once its steps are all done (an epoch's validation)."""
        phase = self._phase
        if phase is not None:
            phase["then"] = what

    def end(self) -> None:
        with self._lock:
            self._phase = None

    def line(self) -> str | None:
        phase = self._phase
        if phase is None:
            return None
        elapsed = time.monotonic() - phase["start"]
        done, total = phase["done"], phase["total"]
        parts = [f"{phase['unit']} {done}/{total}" if total else f"{phase['unit']} {done}" if done else ""]
        if done and phase["per_step"]:
            parts.append(f"{done * phase['per_step'] / elapsed:.1f} images/s")
        parts.append(f"{_clock(elapsed)} elapsed")
        if done and total and done < total:
            parts.append(f"ETA {_clock(elapsed / done * (total - done))}")
        elif done and done == total and phase.get("then"):
            parts.append(phase["then"])
        elif not done and phase["unit"] == "step":
            parts.append("compiling or waiting for the first step")
        return f"  {phase['name']}: " + ", ".join(p for p in parts if p)

    def _run(self):
        while not self._closed:
            self._wake.wait(min(self.interval, 1.0) / 4)
            with self._lock:
                phase = self._phase
                if phase is None or time.monotonic() - phase["printed"] < self.interval:
                    continue
                phase["printed"] = time.monotonic()
                text = self.line()
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stdout: progress is not worth dying for
                return

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)


class EpochProgress(keras.callbacks.Callback):
    """An epoch header (Keras prints none when training one epoch) and, with a `Heartbeat`, the
    epoch's progress lines. Counting only: safe for asynchronous dispatch. With that dispatch a
    step's batch-end call comes when its results are ready, after the host has dispatched later
    steps and maybe begun the validation: so the validation is said once every step is counted,
    and the epoch stays one phase."""

    async_safe = True

    def __init__(self, epochs: int, steps: int, images_per_step: int, heartbeat: Heartbeat | None = None,
                 validation_steps: int | None = None):
        super().__init__()
        self.epochs, self.steps, self.images_per_step, self.heartbeat = epochs, steps, images_per_step, heartbeat
        self.validation_steps = validation_steps

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.epochs == 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
        if self.heartbeat:  # this fit's steps: fewer in a resumed partial epoch
            self.heartbeat.begin(f"epoch {epoch + 1}/{self.epochs}", (self.params or {}).get("steps") or self.steps,
                                 self.images_per_step)

    def on_train_batch_end(self, batch, logs=None):
        if self.heartbeat:
            self.heartbeat.advance(batch + 1)

    def on_test_begin(self, logs=None):
        if self.heartbeat:
            self.heartbeat.then(f"validating ({self.validation_steps} batch{'es' if self.validation_steps != 1 else ''})"
                                if self.validation_steps else "validating")

    def on_epoch_end(self, epoch, logs=None):
        if self.heartbeat:
            self.heartbeat.end()


class Progress:
    """How a run shows the phases outside `fit` (data check, model building, the final evaluation,
    TTA, the report): a `Heartbeat`'s lines while each runs when stdout is no terminal, Keras's
    progress bar for predictions on a terminal (`verbose` 1), a title line for the long ones."""

    def __init__(self, verbose: int = 0, heartbeat: Heartbeat | None = None):
        self.verbose, self.heartbeat = verbose, heartbeat

    @contextlib.contextmanager
    def phase(self, name: str, total: int | None = None, images_per_step: int | None = None, unit="batch",
              title: bool = False):
        if title and self.verbose:
            print(f"{name}...", flush=True)
        if self.heartbeat:
            self.heartbeat.begin(name, total, images_per_step, unit)
        try:
            yield
        finally:
            if self.heartbeat:
                self.heartbeat.end()

    def predict(self, forward, pipe, name: str, tta: str = "none"):
        """Class probabilities of `pipe`'s images through `forward` (a `layerkit.forward.Forward`)
        with the views of `tta` (`tta.predict_probabilities`), shown as the phase `name`: a
        `keras.utils.Progbar` on a terminal, the heartbeat's lines otherwise."""
        from layerkit.training.tta import predict_probabilities

        total = len(pipe)
        bar = keras.utils.Progbar(total) if self.verbose == 1 else None

        def on_batch(done):
            if self.heartbeat:
                self.heartbeat.advance(done)
            if bar is not None:
                bar.update(done)

        with self.phase(f"{name} ({len(pipe.labels)} images)", total, getattr(pipe, "batch_size", None), title=True):
            return predict_probabilities(forward, pipe, tta, on_batch=on_batch)
