"""Checkpoints that are one atomic unit: no kill moment pairs one epoch's weights with
another epoch's state.

Each epoch end writes the model (weights and optimizer) once, to a new file
``checkpoints/epoch-NNNN.keras`` that no committed state refers to yet, then commits by
replacing ``state.json``, the manifest: it names the files of the last and the best epoch
together with the epoch count, the best score and the random-generator counters. That one
rename is the commit; before it the previous manifest and its files are untouched.
After it, ``last.keras`` and ``best.keras`` (the names users open) are pointed at the
committed files (hard links, so no extra copy) and files no manifest names are deleted;
`repair` redoes both at the next start, so a kill between them costs nothing.

A failed write (a full disk, permissions) stops the run with `CheckpointError`, which says
which epoch was saved last, if any; every other write of a run (history, events, results,
report, plots) goes through `run_write` and fails the same way (`RunWriteError`), so the last
saved epoch stays and ``--resume`` completes the run. Weights that are not finite are never
saved: the epoch stops the run with `stop.DivergedError` instead.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import keras
import numpy as np

from layerkit._atomic import atomic_save, atomic_write, fsync_dir, remove_stale_temps
from layerkit.training.rundir import Worded
from layerkit.training.stop import diverged

STATE_NAME = "state.json"
CHECKPOINT_DIR = "checkpoints"
FORMAT = 2
PUBLISHED = {"last": "last.keras", "best": "best.keras"}

# Testing only: "kill@STAGE:EPOCH" sends SIGKILL to this process when the checkpoint write of
# EPOCH (1-based) reaches STAGE (one of STAGES, or "resumed" in the harness), so a test can
# kill at each file operation.
FAULT_ENV = "LAYERKIT_FAULT"
STAGES = ("saving", "saved", "committed", "published")


CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}\.keras")  # the files of CHECKPOINT_DIR that layerkit writes


class RunWriteError(Worded, RuntimeError):
    """A file of the run could not be written; the message says which epoch is saved and how to go on."""


class CheckpointError(RunWriteError):
    """A checkpoint could not be written; the message says what was and was not saved."""


def write_failure(workdir, headline: str, err: OSError, cls=RunWriteError) -> RunWriteError:
    """The error of a failed write of the run in `workdir`: `headline` (what was not written),
    the cause, and the last saved epoch with the command that continues from it."""
    workdir = Path(workdir)
    try:
        state = read_state(workdir)
    except StateError:
        state = None

    def compose(w):
        saved = (f"the last saved checkpoint is epoch {state['epochs_completed']} ({workdir / STATE_NAME}); "
                 f"continue it with {w.resume(workdir)} once the cause is fixed") if state \
            else "no epoch of this run has been saved"
        return f"{headline} ({type(err).__name__}: {err}); {saved}. Training stopped."

    return cls.worded(compose)


@contextlib.contextmanager
def run_write(workdir, what: str):
    """Writes of `what` (a file of the run in `workdir`) inside: an OSError becomes the
    `RunWriteError` a failed checkpoint write gives."""
    try:
        yield
    except OSError as err:
        raise write_failure(workdir, f"{what} could not be written", err) from err


def nonfinite_weights(model) -> list:
    """Paths of `model`'s floating-point variables holding a NaN or an infinity."""
    bad = []
    for v in model.weights:
        if "float" in str(v.dtype) and not np.isfinite(keras.ops.convert_to_numpy(v)).all():
            bad.append(v.path)
    return bad


class StateError(ValueError):
    """``state.json`` cannot be used (unreadable, another format, files missing)."""


def fault_point(stage: str, epoch: int) -> None:
    if os.environ.get(FAULT_ENV) == f"kill@{stage}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def read_state(workdir) -> dict | None:
    """The committed manifest of `workdir`, or None when no epoch has been saved."""
    path = Path(workdir) / STATE_NAME
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise StateError(f"{path} is unreadable ({err}); the run cannot be resumed") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise StateError(f"{path} is not a layerkit checkpoint manifest of format {FORMAT} "
                         f"(found format {found!r}); it was written by another layerkit version")
    for key in ("epochs_completed", "last", "seed_states"):
        if key not in state:
            raise StateError(f"{path} lacks {key!r}; the run cannot be resumed")
    for which in PUBLISHED:
        name = state.get(which)
        if name is not None and not (Path(workdir) / name).is_file():
            raise StateError(f"{path} names {name} as the {which} checkpoint, but it is missing")
    return state


def checkpoint_file(workdir, which: str) -> Path | None:
    """The committed `which` ("last" or "best") checkpoint of `workdir`, or None."""
    state = read_state(workdir)
    if state is None or state.get(which) is None:
        return None
    return Path(workdir) / state[which]


def _link(src: Path, dst: Path) -> None:
    def link(tmp):
        try:
            os.link(src, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(src, tmp)

    atomic_save(dst, link)


def publish(workdir: Path, state: dict) -> None:
    """Point ``last.keras`` / ``best.keras`` at the manifest's files; delete unnamed ones."""
    for which, name in PUBLISHED.items():
        if state.get(which) is not None:
            _link(workdir / state[which], workdir / name)
        elif (workdir / name).exists():
            (workdir / name).unlink()
    named = {Path(state[w]).name for w in PUBLISHED if state.get(w)}
    _remove_checkpoints(workdir, keep=named)
    fsync_dir(workdir)


def _remove_checkpoints(workdir: Path, keep=()) -> None:
    """Delete the checkpoint files (``epoch-NNNN.keras``) not in `keep`; a file of another name
    in ``checkpoints/`` is not layerkit's and stays."""
    folder = workdir / CHECKPOINT_DIR
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name not in keep and CHECKPOINT_NAME.fullmatch(entry.name) and entry.is_file():
                entry.unlink()


def repair(workdir) -> dict | None:
    """Bring a run directory a killed writer left back to its committed state (hold the lock).
    Returns the manifest."""
    workdir = Path(workdir)
    remove_stale_temps(workdir)
    remove_stale_temps(workdir / CHECKPOINT_DIR)
    state = read_state(workdir)
    if state is None:
        for name in PUBLISHED.values():  # written by no committed epoch
            if (workdir / name).exists():
                (workdir / name).unlink()
        _remove_checkpoints(workdir)
    else:
        publish(workdir, state)
    return state


def seed_states(model) -> list:
    """The counters of every random seed generator in `model` (not kept by `.keras` files)."""
    return [keras.ops.convert_to_numpy(v).tolist() for v in model.non_trainable_variables
            if v.path.endswith("seed_generator_state")]


def restore_seed_states(model, states) -> None:
    variables = [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]
    if len(variables) != len(states):
        raise StateError(f"checkpoint has {len(states)} random-generator states, the model {len(variables)}")
    for v, s in zip(variables, states):
        v.assign(np.asarray(s, dtype=v.dtype))


class Checkpoints(keras.callbacks.Callback):
    """Saves the run after every epoch as one atomic unit (see the module docstring)."""

    def __init__(self, workdir, monitor="val_accuracy", mode="max", extra_state=None):
        super().__init__()
        self.workdir = Path(workdir)
        self.monitor = monitor
        self.mode = mode
        self.extra_state = extra_state or (lambda: {})
        self.best = None
        self.best_epoch = None
        self.best_file = None

    def restore(self, state: dict) -> None:
        self.best = state.get("best_value")
        self.best_epoch = state.get("best_epoch")
        self.best_file = state.get("best")

    def _improved(self, value) -> bool:
        if value is None or not np.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        n = epoch + 1
        value = (logs or {}).get(self.monitor)
        improved = self._improved(value)
        name = f"{CHECKPOINT_DIR}/epoch-{n:04d}.keras"
        final = self.workdir / name
        committed = False
        bad = nonfinite_weights(self.model)
        if bad:  # a last step that overflowed: its loss was finite, the weights it left are not
            raise diverged(f"epoch {n} ended with non-finite weights ({len(bad)} variables, first "
                           f"{bad[0]})", n, None)
        try:
            final.parent.mkdir(exist_ok=True)
            fault_point("saving", n)
            atomic_save(final, self.model.save, ".keras")
            fault_point("saved", n)
            best = (float(value), n, name) if improved else (self.best, self.best_epoch, self.best_file)
            state = {
                "format": FORMAT,
                "epochs_completed": n,
                "last": name,
                "best": best[2],
                "best_value": best[0],
                "best_epoch": best[1],
                "monitor": self.monitor,
                "seed_states": seed_states(self.model),
                "time": time.time(),
                **self.extra_state(),
            }
            atomic_write(self.workdir / STATE_NAME, json.dumps(state, indent=1))
            committed = True
            self.best, self.best_epoch, self.best_file = best
            fault_point("committed", n)
            publish(self.workdir, state)
            fault_point("published", n)
        except OSError as err:
            if committed:
                raise CheckpointError.worded(
                    lambda w: f"epoch {n} was saved ({self.workdir / STATE_NAME}), but updating last.keras and "
                              f"best.keras failed ({type(err).__name__}: {err}); {w.resume(self.workdir)} "
                              "repairs them") from err
            raise write_failure(self.workdir, f"the checkpoint of epoch {n} was NOT saved", err,
                                CheckpointError) from err
