"""`train(config, workdir)`: one call that trains from a recipe and leaves a full record.

A run directory holds: ``config.json`` (resolved), ``run.json`` (versions, devices),
``history.csv`` (a row per epoch), ``tensorboard/`` (event files), ``state.json`` (the
checkpoint manifest: what a resume needs) with the files it names in ``checkpoints/``,
``last.keras`` and ``best.keras`` (links to them), and at the end ``results.json``,
``report.md`` and the plots. ``.lock`` keeps a second run out while one writes.
"""

import contextlib
import csv
import dataclasses
import io
import json
import os
import shutil
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

from layerkit import augment, models, storage
from layerkit._atomic import atomic_write
from layerkit.saving import load_weights
from layerkit.training import report as reporting
from layerkit.training.callbacks import (EpochProgress, GracefulStop, Heartbeat, HistoryCSV, Progress, RunLogger,
                                         StopOnNonFinite, TensorBoardLogger)
from layerkit.training.checkpoints import (Checkpoints, StateError, StepCheckpoints, fault_point, position,
                                           read_state, repair, restore_seed_states, run_write)
from layerkit.training.compilation import fast_compile
from layerkit.training.rundir import MARKER, RunError, RunLock, claim_refusal
from layerkit.training.stop import DivergedError, Preempted, StopSignals
from layerkit.training import distribution as dist
from layerkit.training.config import Config, checkpoint_every, validate
from layerkit.training.data import EvenBatches, RunData, load_data
from layerkit.training.losses import NonFiniteStep, SparseCategoricalCrossentropy
from layerkit.training.schedules import make_schedule
from layerkit.training import transfer

NORMALIZE_SAMPLE = 10_000  # training images used to fit mean/std or ZCA


# === Model ===


@contextlib.contextmanager
def precision(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if name == "bf16" else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _fit_sample(config: Config, data: RunData):
    """Up to NORMALIZE_SAMPLE training images (a seeded sample, float32) that fitted layers learn from."""
    pipe = data.train
    n = min(NORMALIZE_SAMPLE, len(pipe.labels))
    idx = np.sort(np.random.default_rng([config.seed, 3]).permutation(len(pipe.labels))[:n])
    return pipe.read(idx).astype("float32")


def _normalizer(config: Config, sample):
    name = config.normalize
    if name == "none":  # the model preprocesses its pixels itself (pretrained backbones)
        return None
    if name == "unit":
        return keras.layers.Rescaling(1 / 255.0, name="normalize")
    if name == "signed":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")
    layer = (augment.ZCAWhitening(epsilon=0.1, name="normalize") if name == "zca"
             else augment.FeatureNormalization(name="normalize"))
    layer.adapt(sample())
    return layer


def _fit_whitening(net: keras.Model, normalized) -> None:
    """Fit every `PatchWhitening` of `net` (airbench's first layer) on what reaches it from
    the normalised training sample."""
    for layer in net.layers:
        if isinstance(layer, augment.PatchWhitening):
            if any(layer.input is t for t in net.inputs):
                layer.adapt(normalized)
            else:
                layer.adapt(keras.Model(net.inputs, layer.input).predict(normalized, verbose=0))


def build_model(config: Config, data: RunData, steps_per_epoch: int | None = None) -> keras.Model:
    """pixels (0..255) -> augmentation (training only) -> normalisation -> zoo model.

    Layers fitted on the data (mean/std or ZCA normalisation, a model's `PatchWhitening`) are
    fitted on a seeded sample of the training images. `steps_per_epoch`: for augmentation
    that follows the epoch (alternating flips)."""
    options = dict(config.model_options)
    name = config.model
    if name == "auto":  # load_data resolves it; a model built from a recipe directly is fitted here
        from layerkit.training import fit

        name, fitted, _ = fit.model(len(data.train.labels))
        options = {**fitted, **options}
    for key in ("num_classes", "input_shape"):
        if key in options:
            raise ValueError(f"model_options.{key} is set from the data; do not pass it")
    options.update(num_classes=len(data.classes), input_shape=data.image_shape)
    if config.l2:
        options["weight_decay"] = config.l2
    for key in ("freeze_backbone", "head_hidden"):  # transfer learning: options of pretrained models
        if getattr(config, key):
            options[key] = getattr(config, key)
    net = models.create(name, **options)
    inputs = keras.Input(data.image_shape, name="pixels")
    x = inputs
    for layer in augment.augmentation(config.augment, seed=config.seed, steps_per_epoch=steps_per_epoch):
        x = layer(x)
    cache = []

    def sample():
        if not cache:
            cache.append(_fit_sample(config, data))
        return cache[0]

    normalizer = _normalizer(config, sample)
    if any(isinstance(layer, augment.PatchWhitening) for layer in net.layers):
        _fit_whitening(net, normalizer(sample()) if normalizer is not None else sample())
    if normalizer is not None:
        x = normalizer(x)
    return keras.Model(inputs, net(x), name=f"{name}-run")


def make_optimizer(config: Config, schedule, steps_per_epoch: int = 1):
    if config.optimizer in ("muon", "decoupled-sgd"):
        return _muon_nesterov(config, schedule, steps_per_epoch)
    common = dict(learning_rate=schedule, weight_decay=config.weight_decay or None,
                  use_ema=config.ema > 0, ema_momentum=config.ema or 0.99)
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=config.momentum, nesterov=config.nesterov, **common)
    elif config.optimizer == "adam":
        opt = keras.optimizers.Adam(**common)
    elif config.optimizer == "adamw":
        opt = keras.optimizers.AdamW(**{**common, "weight_decay": config.weight_decay})
    else:
        opt = keras.optimizers.RMSprop(momentum=config.momentum if config.momentum < 1 else 0.0, **common)
    if config.weight_decay:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # decay kernels only
    return opt


def _muon_nesterov(config: Config, schedule, steps_per_epoch: int):
    from layerkit.training.optimizers import MuonNesterov

    options = dict(config.optimizer_options)
    total = config.epochs * steps_per_epoch
    whiten_epochs = options.pop("whiten_bias_epochs", config.epochs)
    return MuonNesterov(
        learning_rate=schedule, base_lr=config.lr, batch_size=config.batch_size, momentum=config.momentum,
        decay_per_1024=config.weight_decay, muon=config.optimizer == "muon",
        muon_momentum=float(options.pop("muon_momentum", 0.6)), muon_steps=int(options.pop("muon_steps", 3)),
        whiten_bias_steps=int(np.ceil(whiten_epochs * steps_per_epoch)),
        whiten_bias_decay=bool(options.pop("whiten_bias_decay", True)),
        lookahead_steps=total if config.lookahead else 0,
        newton_schulz_dtype="bfloat16" if config.precision == "bf16" else "float32",
        use_ema=config.ema > 0, ema_momentum=config.ema or 0.99, **options)


def compile_model(model, config: Config, steps_per_epoch: int):
    schedule = make_schedule(config, steps_per_epoch)
    nonfinite = NonFiniteStep()  # the divergence check, inside the compiled step
    model.compile(optimizer=make_optimizer(config, schedule, steps_per_epoch),
                  loss=SparseCategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=["accuracy", nonfinite], jit_compile=True)
    nonfinite.watch(model)
    return schedule


def _compile_head(head, model, config: Config) -> None:
    """Compile the head of a frozen-backbone model (`transfer`) as `compile_model` compiles
    the whole one: the same loss, the divergence check, and `model`'s optimizer (one
    optimizer: its state is the checkpoint's)."""
    nonfinite = NonFiniteStep()
    head.compile(optimizer=model.optimizer, loss=SparseCategoricalCrossentropy(label_smoothing=config.label_smoothing),
                 metrics=["accuracy", nonfinite], jit_compile=True)
    nonfinite.watch(head)


# === Run directory ===


def _versions() -> dict:
    import jax

    from layerkit import __version__

    return {"layerkit": __version__, "keras": keras.__version__, "jax": jax.__version__,
            "python": platform.python_version(), "backend": keras.backend.backend(),
            "devices": [str(d) for d in jax.devices()]}


def _record_launch(workdir: Path, epochs_completed: int, topology) -> None:
    """run.json: the versions and devices of the latest launch, and every launch's command
    line, processes (where they came from: flags, JAX_* or the cluster's scheduler) and roles."""
    path = workdir / "run.json"
    try:
        launches = json.loads(path.read_text()).get("launches", []) if path.exists() else []
    except (OSError, ValueError, AttributeError):
        launches = []
    launches.append({"argv": [storage.redact(a) for a in sys.argv], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "cwd": os.getcwd(), "epochs_completed_before": epochs_completed,
                     **({"launch": topology.launch.describe()} if topology.launch else {}),
                     **({"roles": topology.processes} if topology.processes else {})})
    atomic_write(path, json.dumps({**_versions(), "launches": launches}, indent=1))


def _record_data(workdir: Path, splits: dict) -> None:
    """run.json: what this launch's data resolved to (absolute path, images per split, limits)."""
    path = workdir / "run.json"
    record = json.loads(path.read_text())
    data = {**splits["data"], "images_per_split": {k: splits[k]["images"] for k in ("train", "validation", "test")}}
    record["data"] = data
    if record.get("launches"):
        record["launches"][-1]["data"] = data["path"]
    atomic_write(path, json.dumps(record, indent=1))


def _truncate_history(path: Path, epochs: int) -> None:
    """Drop CSV rows of epochs that were not checkpointed (a crash between the two)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= epochs]  # epochs from 1
    text = io.StringIO(newline="")
    csv.writer(text).writerows(kept)
    atomic_write(path, text.getvalue())


class ChiefCheckpoints(Checkpoints):
    """`Checkpoints` for process 0 of a multi-process run: it saves its own copy of the
    replicated state, with no collective the other processes would have to join."""

    def view(self):
        return dist.local_view(self.model)


def _prepare(config: Config, workdir: Path, resume: bool, chief: bool = True):
    """The config and committed checkpoint state to start from. Process 0 holds the run
    lock and first repairs what a killed writer left; the other processes only read."""
    if not chief:
        if resume:
            saved = Config.from_dict(json.loads((workdir / "config.json").read_text()))
            return saved, read_state(workdir)
        return config, None
    if resume:  # train() has checked that config.json exists
        saved = Config.from_dict(json.loads((workdir / "config.json").read_text()))
        return saved, repair(workdir)
    refusal = claim_refusal(workdir)  # again, under the lock: the folder may have changed
    if refusal:
        raise refusal
    if (workdir / MARKER).exists():  # a start that failed before its first checkpoint
        print(f"layerkit: {workdir} holds a run that never completed an epoch; starting it afresh",
              file=sys.stderr)
    with run_write(workdir, f"{MARKER} and config.json"):
        atomic_write(workdir / MARKER, json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                   "pid": os.getpid(), "argv": [storage.redact(a) for a in sys.argv]}))
        repair(workdir)
        atomic_write(workdir / "config.json", config.to_json())
    return config, None


def train(config: Config | None, workdir, resume: bool = False, verbose=None, launch: dist.Launch | None = None,
          signals: StopSignals | None = None, epochs: int | None = None) -> dict:
    """Train `config` into `workdir`, or with `resume` continue the run there from its
    last checkpoint (its saved config is used; pass ``config=None``).

    `launch` (a `distribution.Launch`): the devices and processes of this launch, also on
    resume; default: one process, all local accelerators. `signals`: the `StopSignals` that stop
    the run (the CLI installs them first thing); by default they are installed here for the
    duration of the call. Returns the results dict also written to ``results.json`` (on
    process 0; the other processes return a short summary); ``{"stopped": True, ...}`` when
    a signal stopped the run early, with ``"preempted": True`` and ``"preempted_at": [epoch,
    step]`` when a SIGTERM stopped it at a step boundary (a step checkpoint saved there;
    ``config.checkpoint_every`` saves them also without a signal). With `resume` it continues
    from the last checkpoint, an epoch's end or a step. With `resume`, `epochs` extends the run to that many
    epochs (its schedule is re-planned over them, and it says so).

    A fresh start claims `workdir` only when it does not exist, is empty or holds a start that
    never completed an epoch (`rundir.claim_refusal`; else `RunError`, nothing touched); the
    config, devices and data are checked before the folder is made. One that fails before its
    first checkpoint removes the folder it made, while it holds the lock. A loss or weights
    that become non-finite raise `DivergedError`; results.json then says failed.

    `workdir` may be a bucket URL (``gs://…``, ``s3://…``): the run is written through a local
    staging folder and committed to the bucket (`training.remote`), and resumed from there on
    any machine.
    """
    if storage.is_remote(workdir):
        return _train_remote(config, str(workdir), resume, verbose, launch, signals, epochs)
    return _train_in(config, Path(workdir), resume, verbose, launch, signals, epochs)


def _train_remote(config, url: str, resume: bool, verbose, launch, signals, epochs) -> dict:
    from layerkit.training.remote import RemoteRun

    if storage.scheme(url) not in storage.WRITABLE:
        raise storage.StorageError(f"{storage.redact(url)}: https:// locations are read-only; a run is written to "
                                   "gs://, s3:// or a local folder")
    resolved = (launch or dist.Launch()).resolved()
    run = RemoteRun(url, resume, chief=resolved.process_id == 0)
    try:
        with run:
            return _train_in(config, run.local, resume, verbose, resolved, signals, epochs, mirror=run)
    except Exception as err:
        _rename(err, run)
        raise


def _rename(err: BaseException, run) -> None:
    """Say the bucket URL where an error's words name the run's staging folder."""
    if run.local is None or str(run.local) not in str(err):
        return
    err.args = (run.shown(str(err)), *err.args[1:])
    if isinstance(getattr(err, "cli", None), str):
        err.cli = run.shown(err.cli)


def _train_in(config: Config | None, workdir: Path, resume: bool, verbose, launch, signals, epochs,
              mirror=None) -> dict:
    if not resume:
        if config is None:
            raise ValueError("train() needs a Config unless resume=True")
        config = validate(config)
    if epochs is not None and not resume:
        raise ValueError("train(epochs=...) extends a run on resume; set Config.epochs for a new run")
    launch = (launch or dist.Launch()).resolved()
    chief = launch.process_id == 0
    if resume and chief and not (workdir / "config.json").exists():
        raise RunError.worded(lambda w: f"{workdir} holds no run to resume (no config.json); start one "
                                        f"without {w.resume_flag}")
    if chief and not resume and (refusal := claim_refusal(workdir)):
        raise refusal
    previous = keras.distribution.distribution()
    lock = RunLock(workdir) if chief else None
    created = chief and not resume and not workdir.exists()
    own_signals = signals is None
    signals = StopSignals().install() if own_signals else signals
    data = None
    verbose = _verbosity(verbose, chief)
    progress = Progress(verbose, Heartbeat.for_stdout() if verbose else None)  # lines when stdout is no terminal
    try:
        if not resume:  # bad device, process or data settings fail before the run directory is made
            topology = dist.setup(config, launch)
            data = _load_data(config, topology, progress)
            config = data.config  # image_size=0, batch_size=0, model=auto fitted to the data
        if lock:
            lock.acquire()
        config, state = _prepare(config, workdir, resume, chief)
        if mirror is not None:  # the start's marker and config.json, in the bucket as on a disk
            mirror.sync()
        if resume and chief:
            config = _extend(config, workdir, state, epochs)
        elif resume and epochs is not None:  # process 0 checks and records the extension
            config = dataclasses.replace(config, epochs=epochs)
        if resume:
            topology = dist.setup(config, launch)
        results = _train(config, workdir, state, verbose, topology, signals, progress, data, mirror)
        if topology.peer_watch is not None:
            topology.peer_watch.done()
        return results
    except Exception as err:
        # Only the lock's holder removes anything, and only the folder it made, while it holds
        # the lock; a diverged run keeps its record (results.json says failed).
        if created and lock.held and not isinstance(err, DivergedError) and read_state(workdir) is None:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"layerkit: the start failed before any epoch was saved; removed {workdir}", file=sys.stderr)
        raise
    finally:
        if progress.heartbeat:
            progress.heartbeat.close()
        if own_signals:
            signals.restore()
        if lock:
            lock.release()
        keras.distribution.set_distribution(previous)


def _extend(config: Config, workdir: Path, state, epochs) -> Config:
    """On resume: the config with `epochs` (> those done) saved, or the config as it was. A
    finished run asked for nothing more is refused with the command that would extend it."""
    done = state["epochs_completed"] if state else 0
    if epochs is None:
        if done >= config.epochs and _finished(workdir):
            raise RunError.worded(lambda w: f"{workdir} has finished all {config.epochs} epochs; to train it "
                                            f"further: {w.resume(workdir, 'N')} with N > {config.epochs}")
        return config
    if epochs <= done:
        raise RunError.worded(lambda w: f"{'--epochs ' if w.cli else 'epochs='}{epochs}: {workdir} has already "
                                        f"trained {done} epochs; pass more than {done} to extend it")
    if epochs != config.epochs:
        print(f"layerkit: extending {workdir} from {config.epochs} to {epochs} epochs; the "
              f"{config.schedule} learning-rate schedule is re-planned over {epochs} epochs from "
              f"the step it reached (epoch {done})", file=sys.stderr)
        config = dataclasses.replace(config, epochs=epochs)
        with run_write(workdir, "config.json"):
            atomic_write(workdir / "config.json", config.to_json())
    return config


def _finished(workdir: Path) -> bool:
    """Whether the run in `workdir` wrote its results (a diverged run's say failed)."""
    try:
        return json.loads((workdir / "results.json").read_text()).get("status", "done") == "done"
    except (OSError, ValueError, AttributeError):
        return False


def make_callbacks(config: Config, workdir: Path, chief: bool, steps: int, schedule, checkpoints, stop,
                   data_epochs, heartbeat=None, verbose=1, validation_steps=None, step_checkpoints=None) -> list:
    """The run's callbacks, `data_epochs` (the training Pipeline's, which tells it each epoch
    as it begins) first. None works per step on the host after a step (Keras dispatches them
    asynchronously: tested), so the device is never left waiting for the record;
    `step_checkpoints` (a `checkpoints.StepCheckpoints`, on every process) looks between steps
    and syncs only when it saves. `heartbeat` (a `callbacks.Heartbeat`): progress lines within
    each epoch when stdout is no terminal."""
    if chief:
        callbacks = [
            StopOnNonFinite(),
            RunLogger(config.batch_size, steps, schedule),
            *([EpochProgress(config.epochs, steps, config.batch_size, heartbeat, validation_steps)]
              if verbose else []),
            HistoryCSV(str(workdir / "history.csv"), validation=config.validation > 0, append=True),
            TensorBoardLogger(workdir / "tensorboard"),
            checkpoints,
            stop,
        ]
    else:  # the record is process 0's; every process stops on Ctrl-C at the same epoch end
        callbacks = [StopOnNonFinite(), stop]
    if config.ema:
        callbacks.insert(1, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if step_checkpoints is not None:
        callbacks.append(step_checkpoints)  # its epoch begin after the others': the metrics it restores stay
    return [data_epochs, *callbacks]


def _fits(config: Config, initial_epoch: int, state: dict | None):
    """(first, end, trains_backbone, skip, data_step) of each `fit` of the run from
    `initial_epoch` (`state`: the manifest resumed from, or None): the phases of
    `transfer.phases`, the one a mid-epoch resume falls in split after its partial epoch
    (`skip`: the steps of that epoch already done). `data_step`: the sampler's step the fit
    starts at, where the run stood (the manifest's: a step checkpoint's next batch or the
    end of its epoch, an epoch checkpoint's end); None at a phase's start (and for manifests
    that do not say), where the uninterrupted run starts data epoch `first`."""
    skip = state.get("step", 0) if state else 0
    starts = {0, config.unfreeze_at}
    for first, end, trains_backbone in transfer.phases(config, initial_epoch):
        at = state.get("data_step") if state and first == initial_epoch and first not in starts else None
        if skip and first == initial_epoch:
            yield first, first + 1, trains_backbone, skip, state["data_step"]
            first, at = first + 1, state["data_end"]
        if first < end:
            yield first, end, trains_backbone, 0, None if first in starts else at


def _verbosity(verbose, chief: bool) -> int:
    """Keras's verbose for this process: a progress bar on a terminal, a line an epoch else
    (with `Heartbeat` lines within it); the other processes of a run say nothing."""
    verbose = (1 if sys.stdout.isatty() else 2) if verbose is None else verbose
    return verbose if chief else 0


def _load_data(config: Config, topology, progress: Progress) -> RunData:
    """The run's data, read and checked in one pass, with image_size=0, batch_size=0 and
    model=auto fitted to it (`data.config`)."""
    with precision(config.precision), fast_compile(config.fast_compile):
        with progress.phase("reading and checking every image of the data"):
            return load_data(config, topology.process_index, topology.process_count, len(topology.devices))


def _train(config: Config, workdir: Path, state, verbose, topology, signals, progress: Progress,
           data: RunData | None = None, mirror=None) -> dict:
    chief = topology.is_chief
    shown = storage.redact(mirror.url) if mirror else workdir  # the run's name in what it prints
    initial_epoch = state["epochs_completed"] if state else 0
    if chief:
        with run_write(workdir, "run.json"):
            _record_launch(workdir, initial_epoch, topology)
    keras.utils.set_random_seed(config.seed)

    with precision(config.precision), fast_compile(config.fast_compile):
        if data is None:  # a resume: its config.json holds the values fitted at the start
            data = _load_data(config, topology, progress)
        config = data.config
        if chief:
            with run_write(workdir, "classes.json and run.json"):
                atomic_write(workdir / "classes.json", json.dumps(list(data.classes)))
                _record_data(workdir, data.splits)
        steps = config.steps_per_epoch or len(data.train)
        with progress.phase("building the model (fitting its normalisation to the training images)"):
            model = build_model(config, data, steps)
            unfrozen = bool(config.unfreeze_at) and initial_epoch >= config.unfreeze_at
            if unfrozen:  # a resume in the second phase: the model as that phase compiled it
                transfer.unfreeze(model)
            schedule = compile_model(model, transfer.phase_config(config, unfrozen), steps)
        skip = state.get("step", 0) if state else 0  # steps of epoch initial_epoch + 1 already done
        if skip and state["steps_per_epoch"] != steps:
            raise StateError(f"{workdir / 'state.json'} was saved at {state['steps_per_epoch']} steps an epoch; this "
                             f"run makes {steps}: the run cannot be resumed mid-epoch")
        if state:
            # Same construction path as the uninterrupted run, then the saved state:
            # weights, optimizer slots and step, random-generator counters (and, mid-epoch,
            # the data position and the epoch's running metrics: below).
            model.optimizer.build(model.trainable_variables)
            load_weights(model, workdir / state["last"])
            restore_seed_states(model, state["seed_states"])
            print(f"resuming {shown} after {position(state)} of {config.epochs} epochs" if skip
                  else f"resuming {shown} after epoch {initial_epoch} of {config.epochs}", file=sys.stderr)
            fault_point("resumed", initial_epoch)
        if chief:
            kept = f"; the decoded train split kept on {data.train.device}" if data.train.device is not None else ""
            for note in data.notes:
                print(f"layerkit: {note}", file=sys.stderr)
            print(f"layerkit: {config.model} on {config.data} ({len(data.train.labels)} train images, "
                  f"batch {config.batch_size}, validation: {data.validation_name}){kept}", file=sys.stderr, flush=True)

        stop = GracefulStop(signals)
        signals.at_steps = topology.process_count == 1  # several: JAX's preemption service picks the step (StepCheckpoints)
        checkpoints = (ChiefCheckpoints if topology.process_count > 1 else Checkpoints)(workdir)
        checkpoints.mirror = mirror if chief else None
        if state:
            checkpoints.restore(state)
        step_checkpoints = StepCheckpoints(checkpoints if chief else None, checkpoint_every(config.checkpoint_every),
                                           steps, data.train, signals, sync_point=dist.preemption_sync_point(topology))
        step_checkpoints.restore(state)
        if chief:
            with run_write(workdir, "history.csv"):
                _truncate_history(workdir / "history.csv", initial_epoch)
        validation = EvenBatches(data.validation) if topology.distributed and data.validation else data.validation
        features = None
        start = time.perf_counter()
        preempted = None
        for first, end, trains_backbone, skipped, data_step in _fits(config, initial_epoch, state):
            if trains_backbone and not unfrozen:  # the second phase of fine-tuning begins
                transfer.unfreeze(model)
                schedule = compile_model(model, transfer.phase_config(config, True), steps)
                unfrozen = True
            # a resumed partial epoch runs its remaining steps from the saved data step
            fit_steps = state["data_end"] - data_step if skipped else config.steps_per_epoch or None
            fitted, train, val, epochs_callback = model, data.train, validation, data.train.epoch_callback(fit_steps)
            if not trains_backbone and transfer.uses_features(config, topology.process_count):
                if features is None:  # the frozen backbone's features, once (transfer.py)
                    features = _frozen_features(config, model, data, workdir, progress)  # one process: the chief
                head, train_features, val_features = features
                _compile_head(head, model, config)
                fitted, epochs_callback = head, keras.callbacks.Callback()
                train = transfer.FeatureBatches(*train_features, config.batch_size, config.seed, epoch=first)
                val = val_features
                transfer.save_whole_model(checkpoints, model)
            validation_steps = len(val) if fitted is model and val is not None else None
            callbacks = make_callbacks(config, workdir, chief, steps, schedule, checkpoints, stop, epochs_callback,
                                       progress.heartbeat, verbose, validation_steps,
                                       step_checkpoints if fitted is model else None)
            if data_step is None:  # a phase's start: data epoch `first`, as the uninterrupted run
                data.train.set_epoch(first)
            else:  # where the run stood: a step or an epoch end
                data.train.restore({"epoch": data_step // len(data.train), "batch": data_step % len(data.train)})
            step_checkpoints.begin_fit(skipped, state["metrics"] if skipped else None)
            try:
                fitted.fit(train, validation_data=val, epochs=end, initial_epoch=first, steps_per_epoch=fit_steps,
                           shuffle=False, verbose=verbose, callbacks=callbacks)
            except Preempted as err:  # SIGTERM: a step checkpoint saved (one process), fit ended mid-epoch
                preempted = err
                break
            except DivergedError as err:
                if chief:
                    _record_failure(workdir, err)
                raise
            except Exception as err:
                if topology.peer_watch is not None:
                    topology.peer_watch.after_failure(err)  # exits 4 when a peer is gone
                raise
            if stop.stopped:
                break  # a signal stopped the run: what follows says so
        train_seconds = time.perf_counter() - start
        if preempted is not None and topology.process_count > 1:
            print(f"layerkit: process {topology.process_index}: a preemption notice (SIGTERM) reached this run; "
                  f"all {topology.process_count} processes stop at step {preempted.step} of epoch "
                  f"{preempted.epoch + 1}", file=sys.stderr, flush=True)
        if not chief:
            data.train.close()
            return {"process_index": topology.process_index, "epochs": config.epochs,
                    "train_seconds_this_session": round(train_seconds, 1),
                    "stopped": stop.stopped or preempted is not None,
                    **({"preempted": True, "preempted_at": [preempted.epoch, preempted.step]} if preempted else {})}
        saved = read_state(workdir) or {}
        done = saved.get("epochs_completed", 0)
        if preempted is not None:
            where = f"at step {preempted.step} of epoch {preempted.epoch + 1}"
            print(f"layerkit: SIGTERM: stopped {where}"
                  + ("" if not saved else f" (the last checkpoint: {position(saved)}"
                     + (", saved now" if preempted.saved else ", already saved") + ")")
                  + f"; continue with `layerkit train --resume --out {shown}`", file=sys.stderr)
            return {"epochs_completed": done, "step": saved.get("step", 0), "stopped": True, "preempted": True,
                    "preempted_at": [preempted.epoch, preempted.step]}
        if done < config.epochs:
            print(f"layerkit: stopped after epoch {done} of {config.epochs}; continue with "
                  f"`layerkit train --resume --out {shown}`", file=sys.stderr)
            return {"epochs_completed": done, "stopped": True}
        if config.ema:
            model.optimizer.finalize_variable_values(model.trainable_variables)
        if topology.distributed:
            dist.localize(model)  # the final evaluation runs on this process's first device
        return finish(config, workdir, model, data, train_seconds, checkpoints,
                      progress, initial_epoch)


def _record_failure(workdir: Path, err: DivergedError) -> None:
    """results.json of a diverged run: failed, where, and what was saved."""
    state = read_state(workdir)
    results = {"status": "failed", "failure": "diverged", "message": str(err), "epoch": err.epoch,
               "step": err.step, "epochs_completed": state["epochs_completed"] if state else 0}
    try:
        atomic_write(workdir / "results.json", json.dumps(results, indent=1))
    except OSError as write_err:
        print(f"layerkit: results.json could not be written ({write_err})", file=sys.stderr)


def _frozen_features(config, model, data, workdir: Path, progress: Progress):
    """(head, (train features, labels), (validation features, labels) or None): the frozen
    backbone run once over every training and validation image (`transfer`), through
    `layerkit.forward.Forward`, the one forward-pass function (ONNX Runtime on a CPU where it
    pays, the graph cached in the run's onnx-cache/)."""
    from layerkit.training.inference import run_forward

    extractor, head = transfer.split(model)
    began = time.perf_counter()
    images = len(data.train.labels) + (len(data.validation.labels) if data.validation is not None else 0)
    forward = run_forward(extractor, workdir, images=images, batch_size=data.train.batch_size,
                          verbose=bool(progress.verbose))
    with progress.phase(f"the frozen backbone's features of {images} images", title=True):
        train = (transfer.compute_features(forward, transfer.ordered(data.train)), data.train.labels)
        val = None
        if data.validation is not None:
            val = (transfer.compute_features(forward, data.validation), data.validation.labels)
    if progress.verbose:
        print(f"layerkit: the frozen backbone's features of {len(train[1])} train"
              + (f" and {len(val[1])} validation" if val else "") + f" images computed once in "
              f"{time.perf_counter() - began:.1f} s on {forward.runtime}; the head trains on them", file=sys.stderr)
    return head, train, val


# === Evaluation and the record ===


def scores(probs, labels) -> dict:
    labels = np.asarray(labels)
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)
    return {"accuracy": float(np.mean(probs.argmax(-1) == labels)), "loss": float(-np.mean(np.log(p)))}


def finish(config, workdir: Path, model, data: RunData, train_seconds: float, checkpoints,
           progress: Progress | None = None, initial_epoch: int = 0) -> dict:
    from layerkit.training.inference import run_forward
    from layerkit.training.tta import VIEWS

    progress = progress or Progress()
    labels = data.test.labels
    views = VIEWS[config.tta] if config.tta != "none" else 0
    weights = 2 if checkpoints.best_file is not None else 1
    # One forward function for the end-of-training and the best weights, plain and TTA: it
    # follows the model's weights, so loading the best ones below needs no new conversion or
    # compilation (on ONNX Runtime, the same converted graph with the new weights bound).
    forward = run_forward(model, workdir, images=len(labels) * (1 + views) * weights,
                          batch_size=data.test.batch_size)
    final = progress.predict(forward, data.test, "final evaluation: end-of-training weights on the test split")
    results = {"data": data.splits["data"], "splits": {k: v for k, v in data.splits.items() if k != "data"},
               "test_images": int(len(labels)),
               "test_accuracy_final": scores(final, labels)["accuracy"],
               "test_loss_final": scores(final, labels)["loss"]}
    if config.tta != "none":
        results["tta"] = config.tta
        results["test_accuracy_final_tta"] = scores(progress.predict(
            forward, data.test, f"final evaluation: end-of-training weights, {config.tta} TTA", config.tta),
            labels)["accuracy"]
    if checkpoints.best_file is not None:
        # the best weights into the same model: the forward function serves them too
        best = model
        load_weights(best, workdir / checkpoints.best_file)
        name = f"final evaluation: best weights (epoch {checkpoints.best_epoch})"
        results["test_accuracy_best"] = scores(progress.predict(forward, data.test, name), labels)["accuracy"]
        results["best_epoch"] = checkpoints.best_epoch
        results["best_selected_on"] = data.validation_name
        if config.tta != "none":
            results["test_accuracy_best_tta"] = scores(progress.predict(
                forward, data.test, f"{name}, {config.tta} TTA", config.tta), labels)["accuracy"]
    results["forward"] = forward.record()
    history = reporting.read_history(workdir / "history.csv")
    seconds = history.get("epoch_seconds", [])
    results.update(
        status="done", epochs=config.epochs,
        # both sums of the epochs' own times (compilation in the first epoch of a session, as
        # history.csv has it): this session's epochs, and every epoch of the run
        train_seconds_this_session=round(sum(seconds[initial_epoch:]), 1),
        train_seconds_total=round(sum(seconds), 1),
        parameters=int(model.count_params()),
        mean_images_per_sec=round(float(np.mean(history["images_per_sec"])), 1) if history.get("images_per_sec") else None,
    )
    if config.report:  # `model` may now hold the best weights: the record uses `final`'s predictions
        with run_write(workdir, "the report (report.md and the plots)"), \
                progress.phase("writing the report: plots, report.md", title=bool(progress.verbose)):
            write_record(config, workdir, model, data, final, history, results)
    with run_write(workdir, "results.json"):  # last: a run without it is resumed to write the record
        atomic_write(workdir / "results.json", json.dumps(results, indent=1))
    print(f"test accuracy: {results['test_accuracy_final']:.4f} (end of training)"
          + (f", {results['test_accuracy_final_tta']:.4f} with {config.tta} TTA" if config.tta != "none" else "")
          + (f", {results['test_accuracy_best']:.4f} (best weights, epoch {results['best_epoch']})"
             if "test_accuracy_best" in results else ""))
    return results


def write_record(config, workdir, model, data, probabilities, history, results):
    """Plots, per_class_accuracy.csv, confusion_matrix.csv and report.md for a finished run.

    `probabilities`: the test predictions, (images, classes), of the end-of-training
    weights (a 1-D array of predicted classes is taken too, shown without confidences)."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 2:
        predicted, confidence = probabilities.argmax(-1), probabilities.max(-1)
    else:
        predicted, confidence = probabilities.astype(np.int64), None
    labels = np.asarray(data.test.labels)
    notes = [reporting.loss_note(config)]
    figures = reporting.plot_history(history, workdir)
    train_labels = data.train.labels
    per_class = [np.flatnonzero(train_labels == c)[:8] for c in range(len(data.classes))]
    idx = np.sort(np.concatenate(per_class))
    samples = data.train.read(idx)
    figures.append(reporting.plot_samples(samples, train_labels[idx], data.classes, workdir / "samples.png"))
    layers = augment.augmentation(config.augment, seed=config.seed, steps_per_epoch=1)
    if layers:
        figures.append(reporting.plot_samples(
            reporting.augment_images(samples, layers), train_labels[idx], data.classes,
            workdir / "samples_augmented.png",
            title=f"the same images augmented (augment={config.augment}, training mode)"))
    else:
        notes.append("No augmentation (augment=none): the model trained on the images as stored.")
    shown = np.concatenate([np.flatnonzero(predicted == labels)[:24], np.flatnonzero(predicted != labels)[:24]])
    images = np.zeros((len(labels), *data.image_shape), np.uint8)
    order = np.sort(shown)
    if len(order):
        images[order] = data.test.read(order)
    figures += reporting.plot_predictions(images, labels, predicted, data.classes, workdir,
                                          confidence=confidence)
    matrix = reporting.confusion_matrix(labels, predicted, len(data.classes))
    np.savetxt(workdir / "confusion_matrix.csv", matrix, fmt="%d", delimiter=",",
               header=",".join(data.classes))
    figures.append(reporting.plot_confusion(matrix, data.classes, workdir / "confusion_matrix.png"))
    accuracy = reporting.per_class_accuracy(labels, predicted, data.classes)
    reporting.write_per_class_csv(accuracy, workdir / "per_class_accuracy.csv")
    graph_note = reporting.plot_graph(model, workdir / "model.png")
    if graph_note:
        notes.append(graph_note)
    else:
        figures.append(workdir / "model.png")
    notes.append("Predictions, per-class accuracy and the confusion matrix use the end-of-training weights; "
                 "confusion_matrix.csv holds the raw counts.")
    reporting.write_report(workdir, config, results, figures, notes, per_class=accuracy)
