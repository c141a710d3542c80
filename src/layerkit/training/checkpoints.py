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

Step checkpoints (``checkpoint_every``: every N steps or every so long, and at a SIGTERM) are
the same unit written between two steps of an epoch (`StepCheckpoints`), to
``checkpoints/step-GGGGGGGG.keras`` (G: the global step); the manifest then also holds the data
position (the epoch, the steps done in it, the pipeline's data step and the one after the
epoch) and the epoch's running metrics, and names the last epoch's file as ``last_epoch``; an
epoch's manifest holds the data step after it (``data_step``: with ``steps_per_epoch`` below a
pass, epochs do not start at a pass's start). ``last`` is always the newest
checkpoint, the one ``--resume`` continues from; each commit keeps the files of ``last``,
``last_epoch`` and ``best`` and deletes the others, so at most one step checkpoint stays.

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
from layerkit.training.stop import Preempted, StopSignals, diverged

STATE_NAME = "state.json"
CHECKPOINT_DIR = "checkpoints"
FORMAT = 2
PUBLISHED = {"last": "last.keras", "best": "best.keras"}

KEPT = ("last", "last_epoch", "best")  # the manifest's files: each commit deletes the others

# Testing only: "kill@STAGE:WHERE" sends SIGKILL (and "term@STAGE:WHERE" SIGTERM) to this process
# when the checkpoint write of WHERE (an epoch, 1-based, or step-G for the step checkpoint of
# global step G) reaches STAGE (one of STAGES; "resumed" in the harness, WHERE the epochs
# completed; "step" before global step G runs, WHERE G), so a test can kill at each file operation.
FAULT_ENV = "LAYERKIT_FAULT"
STAGES = ("saving", "saved", "committed", "published")
REMOTE_STAGES = ("uploaded", "remote-committed")  # a bucket run's copy of a commit (training.remote)
FAULT_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


CHECKPOINT_NAME = re.compile(r"(epoch-\d{4,}|step-\d{8,})\.keras")  # the files of CHECKPOINT_DIR that layerkit writes


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
        saved = (f"the last saved checkpoint is {position(state)} ({workdir / STATE_NAME}); "
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


def fault_point(stage: str, where) -> None:
    fault = os.environ.get(FAULT_ENV, "")
    action, _, point = fault.partition("@")
    if action in FAULT_SIGNALS and point == f"{stage}:{where}":
        signals = StopSignals.installed
        counted = signals.count if signals is not None else 0
        os.kill(os.getpid(), FAULT_SIGNALS[action])
        deadline = time.monotonic() + 30  # SIGTERM: until the watcher thread has counted it, so the
        while signals is not None and signals.count == counted and time.monotonic() < deadline:
            time.sleep(0.001)  # run reacts where a test put it (the next check), not a step later


def position(state: dict) -> str:
    """Where a manifest stands, in words: "epoch 3" (its end) or "step 4 of epoch 4"."""
    if state.get("step"):
        return (f"step {state['step']} of {state['steps_per_epoch']} in epoch {state['epochs_completed'] + 1}")
    return f"epoch {state['epochs_completed']}"


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
    if state.get("step") and not {"steps_per_epoch", "data_step", "data_end", "metrics"} <= set(state):
        raise StateError(f"{path} is a step checkpoint without its data position; the run cannot be resumed")
    for which in KEPT:
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
    named = {Path(state[w]).name for w in KEPT if state.get(w)}
    _remove_checkpoints(workdir, keep=named)
    fsync_dir(workdir)


def _remove_checkpoints(workdir: Path, keep=()) -> None:
    """Delete the checkpoint files (``epoch-NNNN.keras``, ``step-GGGGGGGG.keras``) not in `keep`; a file of another name
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
    """Saves the run after every epoch, and between steps when `save_step` is called (by
    `StepCheckpoints`), each save one atomic unit (see the module docstring)."""

    def __init__(self, workdir, monitor="val_accuracy", mode="max", extra_state=None):
        super().__init__()
        self.workdir = Path(workdir)
        self.monitor = monitor
        self.mode = mode
        self.extra_state = extra_state or (lambda: {})
        self.best = None
        self.best_epoch = None
        self.best_file = None
        self.last_epoch_file = None
        self.next_data_step = None  # the sampler's step after the epoch in progress (`StepCheckpoints` sets it)
        self.mirror = None  # a `remote.RemoteRun`: each commit is copied to the bucket, its manifest last

    def restore(self, state: dict) -> None:
        self.best = state.get("best_value")
        self.best_epoch = state.get("best_epoch")
        self.best_file = state.get("best")
        self.last_epoch_file = state.get("last_epoch", None if state.get("step") else state.get("last"))

    def view(self):
        """The context in which the model's variables are this process's to read (`ChiefCheckpoints`)."""
        return contextlib.nullcontext()

    def _improved(self, value) -> bool:
        if value is None or not np.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        n = epoch + 1
        value = (logs or {}).get(self.monitor)
        name = f"{CHECKPOINT_DIR}/epoch-{n:04d}.keras"
        best = (float(value), n, name) if self._improved(value) else (self.best, self.best_epoch, self.best_file)
        data = {} if self.next_data_step is None else {"data_step": int(self.next_data_step)}
        with self.view():
            self._commit(name, n, f"epoch {n}", {"epochs_completed": n, "last_epoch": name, **data}, best)
        self.last_epoch_file, self.next_data_step = name, None

    def save_step(self, epoch: int, step: int, steps_per_epoch: int, data_step: int, data_end: int) -> None:
        """A step checkpoint: epoch `epoch` (from 0) has run `step` of its `steps_per_epoch` steps;
        `data_step`: the training pipeline's step of the next batch, `data_end` the one after
        the epoch's last (the partial epoch a resume runs is the steps between). Call with the
        model's variables holding the state after that step (`StepCheckpoints` syncs them)."""
        g = epoch * steps_per_epoch + step
        name = f"{CHECKPOINT_DIR}/step-{g:08d}.keras"
        with self.view():
            metrics = {v.path: keras.ops.convert_to_numpy(v).tolist() for v in self.model.metrics_variables}
            self._commit(name, f"step-{g}", f"step {step} of epoch {epoch + 1}",
                         {"epochs_completed": epoch, "step": step, "steps_per_epoch": steps_per_epoch,
                          "data_step": int(data_step), "data_end": int(data_end), "metrics": metrics,
                          "last_epoch": self.last_epoch_file},
                         (self.best, self.best_epoch, self.best_file))

    def _commit(self, name: str, where, what: str, position_fields: dict, best: tuple) -> None:
        """Write the model to `name`, then commit the manifest (`position_fields`, `best`: the
        best value, epoch and file) and publish; `where` names the write for `fault_point`."""
        final = self.workdir / name
        committed = False
        bad = nonfinite_weights(self.model)
        if bad:  # a last step that overflowed: its loss was finite, the weights it left are not
            epoch = position_fields["epochs_completed"] + (1 if position_fields.get("step") else 0)
            raise diverged(f"{what} ended with non-finite weights ({len(bad)} variables, first {bad[0]})",
                           epoch, position_fields.get("step"))
        try:
            final.parent.mkdir(exist_ok=True)
            fault_point("saving", where)
            atomic_save(final, self.model.save, ".keras")
            fault_point("saved", where)
            state = {
                "format": FORMAT,
                **position_fields,
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
            fault_point("committed", where)
            publish(self.workdir, state)
            fault_point("published", where)
        except OSError as err:
            if committed:
                raise CheckpointError.worded(
                    lambda w: f"{what} was saved ({self.workdir / STATE_NAME}), but updating last.keras and "
                              f"best.keras failed ({type(err).__name__}: {err}); {w.resume(self.workdir)} "
                              "repairs them") from err
            raise write_failure(self.workdir, f"the checkpoint of {what} was NOT saved", err,
                                CheckpointError) from err
        if self.mirror is not None:
            self.mirror.commit(state, where, what)


class StepCheckpoints(keras.callbacks.Callback):
    """Step checkpoints between two steps of an epoch, and the stop at a SIGTERM.

    `every` (``config.checkpoint_every`` parsed: ("steps", N), ("seconds", S) or None) saves
    after every N-th global step (epoch x steps_per_epoch + step, so a resumed run saves at
    the same steps), or at the first step boundary S seconds after the last save; never at an
    epoch's end, where `Checkpoints` saves. A SIGTERM (`signals.preempt`) saves at the next step
    boundary, unless the state there is already committed, and raises `stop.Preempted`, which
    ends `fit` before the epoch's validation and end. With several processes (`sync_point`:
    `jax.experimental.multihost_utils.reached_preemption_sync_point`) JAX's preemption service
    takes SIGTERM instead (its handler replaces ours when the distributed runtime starts), tells
    every process, and they agree on the step after the furthest one any has reached: every
    process stops there, process 0 saving.

    It works in ``on_train_batch_begin``, which Keras's trainer calls in the training loop
    between two steps (the JAX state of the last step is at hand there: `jax_state_sync` puts
    it into the variables only when a checkpoint is saved); it has no batch-end hook, so Keras
    still dispatches the other callbacks' batch-end calls asynchronously.

    A resumed partial epoch (`begin_fit`) counts its steps from the saved step and, at its
    start (after Keras reset the metrics), sets the metric variables to the saved running
    values, so that epoch's logs are those of the uninterrupted run.
    """

    def __init__(self, checkpoints, every, steps_per_epoch: int, pipeline, signals, clock=time.monotonic,
                 sync_point=None):
        super().__init__()
        self.checkpoints = checkpoints  # None on the processes that do not write
        self.every, self.steps_per_epoch, self.pipeline, self.signals = every, steps_per_epoch, pipeline, signals
        self.clock, self.sync_point = clock, sync_point
        self.skip, self.metrics, self.epoch = 0, None, 0
        self.committed = None  # the global step of the last committed checkpoint this session knows
        self._last_save = clock()

    def restore(self, state: dict | None) -> None:
        """Where the run resumes (`state`, the manifest; None: a new run)."""
        if state is None:
            self.committed = 0
            return
        self.committed = state["epochs_completed"] * self.steps_per_epoch + state.get("step", 0)

    def begin_fit(self, skip: int = 0, metrics: dict | None = None) -> None:
        """The next `fit` runs an epoch whose first `skip` steps are done, with running `metrics`
        ({variable path: value}, a step checkpoint's) restored at its start."""
        self.skip, self.metrics = skip, metrics

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.checkpoints is not None:  # where the data stand after this epoch, for its checkpoint
            self.checkpoints.next_data_step = self.pipeline.epoch_end_step
        if self.metrics is not None:
            variables = {v.path: v for v in self.model.metrics_variables}
            if set(variables) != set(self.metrics):
                raise StateError(f"the step checkpoint holds the metrics {sorted(self.metrics)}, the model "
                                 f"{sorted(variables)}")
            for path, value in self.metrics.items():
                variables[path].assign(np.asarray(value, dtype=variables[path].dtype))
            self.metrics = None

    def on_epoch_end(self, epoch, logs=None):
        self.skip = 0
        self.committed = (epoch + 1) * self.steps_per_epoch  # `Checkpoints` saved it (or the run stops)
        self._last_save = self.clock()

    def on_train_batch_begin(self, batch, logs=None):
        step = self.skip + batch  # steps done in this epoch
        g = self.epoch * self.steps_per_epoch + step
        fault_point("step", g)
        if self._preempted(g):
            saved = g != self.committed and self._save(step, batch)
            raise Preempted(self.epoch, step, saved)
        if not batch or g == self.committed or self.every is None or self.checkpoints is None:
            return
        kind, amount = self.every
        if (g % amount == 0) if kind == "steps" else (self.clock() - self._last_save >= amount):
            self._save(step, batch)

    def _preempted(self, g: int) -> bool:
        if self.sync_point is not None:  # several processes: called at every step, as JAX requires
            return bool(self.sync_point(g))
        return self.signals is not None and self.signals.preempt and self.signals.at_steps

    def _save(self, step: int, batch: int) -> bool:
        if self.checkpoints is None:
            return False
        sync = getattr(self.model, "jax_state_sync", None)  # JAX: the last step's state into the variables
        if sync is not None:
            sync()
        self.checkpoints.save_step(self.epoch, step, self.steps_per_epoch, self.pipeline.epoch_step(batch),
                                   self.pipeline.epoch_end_step)
        self.committed = self.epoch * self.steps_per_epoch + step
        self._last_save = self.clock()
        return True
