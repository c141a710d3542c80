"""A run's configuration: one flat, typed record, made by a recipe and adjusted by overrides.

Recipes (``layerkit.training.recipes``) return a `Config`; the CLI applies
``key=value`` overrides with `apply_overrides`, which converts each value to the
field's type and rejects unknown keys with the list of valid ones. `RANGES` is the one
table of every key's (and every other `layerkit train` flag's) type and range: `Config()`
checks it at construction, `apply_overrides` and `layerkit.train` again, the CLI its flags.
"""

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field

from layerkit import storage


@dataclass
class Config:
    # === Model ===
    model: str = "cnn"  # a zoo name, see `layerkit models`; auto: fitted to the data (layerkit.training.fit)
    model_options: dict = field(default_factory=dict)  # passed to layerkit.models.create
    # Transfer learning (a pretrained zoo model: model_options.weights=imagenet or a path)
    freeze_backbone: bool = False  # the backbone does not train, its BatchNorm in inference mode; only the head learns
    unfreeze_at: int = 0  # from this epoch on (0 = never) the backbone trains too, BatchNorm kept frozen (two-phase fine-tuning)
    unfreeze_lr: float = 1e-5  # the peak learning rate of that second phase (the schedule restarts over its epochs)
    head_hidden: int = 0  # units of a ReLU layer between the pooled features and the classifier (0 = a linear head)
    features: str = "auto"  # frozen backbone, no augmentation: auto (its features computed once, the head trains on them), every_epoch
    # === Data ===
    data: str = "sample"  # a named data set (sample, cifar10, flowers) or a path
    data_dir: str = ""  # where named data sets are looked up ("" = the usual places)
    data_keys: str = ""  # TFRecord feature names: default, flowers, tfds or encoded=KEY,label=KEY ("" = detected from the first record)
    image_size: int = 0  # resize/crop images to this square size (0 = fitted: as stored when they share one size of 16..256 px, layerkit.training.fit)
    on_bad_image: str = "error"  # an image that does not read or decode: error (name every one, stop) or skip (leave out, count in results.json)
    test_data: str = ""  # a separate test set (path); "" = the data's own test split, else carved out
    test_split: float = 0.1  # fraction carved out as the test set (stratified, seeded) when the data has no test split
    validation: float = 0.1  # fraction of the training images held out (stratified, seeded) to pick the best epoch; 0 = none
    train_limit: int = 0  # use only this many training images (0 = all); for smoke runs
    test_limit: int = 0  # likewise for the validation and test images
    augment: str = "none"  # an augmentation preset of layerkit.augment
    normalize: str = "mean_std"  # mean_std (fitted on train), zca, unit (x/255), signed (x/127.5-1), none (the model preprocesses: pretrained backbones)
    data_on_device: str = "auto"  # keep the decoded train split on the accelerator: auto (a GPU/TPU and <= 1 GiB decoded), yes, no
    # === Optimisation ===
    epochs: int = 10
    batch_size: int = 128  # 0 = fitted to the data (layerkit.training.fit)
    optimizer: str = "sgd"  # sgd, adam, adamw, rmsprop; muon, decoupled-sgd: airbench's (training/optimizers.py)
    optimizer_options: dict = field(default_factory=dict)  # muon / decoupled-sgd: head_lr, bias_lr, ... (OPTIMIZER_OPTIONS)
    lr: float = 0.05  # peak learning rate (muon: the Muon step; decoupled-sgd: per 1024 examples)
    momentum: float = 0.9  # SGD momentum (or RMSprop's rho-free momentum)
    nesterov: bool = True
    weight_decay: float = 0.0  # decoupled (AdamW/SGDW style), per step, scaled by lr; muon/decoupled-sgd: per 1024 examples
    l2: float = 0.0  # coupled L2 penalty on kernels (the tutorials' kernel_regularizer)
    schedule: str = "cosine"  # constant, step, cosine, warmup_exp, onecycle, linear (start_lr -> lr -> min_lr)
    warmup_epochs: float = 0.0  # linear ramp-up length
    step_epochs: tuple = ()  # epochs at which "step" multiplies the lr by step_factor
    step_factor: float = 0.2
    decay_rate: float = 0.8  # per-epoch decay of "warmup_exp"
    min_lr: float = 0.0
    start_lr: float = 0.0  # the linear schedule's lr at step 0
    lookahead: bool = False  # muon / decoupled-sgd: airbench's lookahead (every 5 steps, weights to a slow average)
    label_smoothing: float = 0.0
    ema: float = 0.0  # EMA decay of the weights (0 = off), via keras SwapEMAWeights
    precision: str = "fp32"  # fp32 or bf16 (mixed)
    # === Run ===
    seed: int = 0
    tta: str = "none"  # test-time augmentation in the final evaluation: none, flip, 6view (flip x 3 shifts)
    steps_per_epoch: int = 0  # 0 = a full pass over the training split
    checkpoint_every: str = ""  # also a step checkpoint every N steps (50) or every so long (30s, 10min, 2h); "" or 0 = epoch ends only
    report: bool = True  # write plots and report.md at the end
    fast_compile: bool = False  # XLA optimisations mostly off: ~half the compile time, steps ~1.3-1.5x slower (smoke runs)

    def __post_init__(self):
        for f in dataclasses.fields(self):  # the types Python passed, as JSON and key=value give them
            setattr(self, f.name, _typed(f.name, getattr(self, f.name)))
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown config keys {sorted(unknown)}. Valid keys: {', '.join(keys())}")
        return cls(**{name: _coerce(name, value) for name, value in values.items()})


def keys() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


_TYPES = {f.name: f.type for f in dataclasses.fields(Config)}


# === Ranges ===


class Range:
    """The values a config key or a CLI flag takes: a type, and an interval or a set of choices.

    `interval`: ">= 1", "> 0", "[0, 1)", "(0, 1)" ... (for a tuple: each element's); floats must
    be finite. `note` says what a special value means ("0 = all")."""

    def __init__(self, kind, interval: str = "", choices: tuple = (), note: str = "", parse=None, words: str = ""):
        self.kind, self.interval, self.choices, self.note = kind, interval, tuple(choices), note
        self.parse, self.words = parse, words  # a str key with a syntax: its parser (ValueError when bad), in words
        self._bounds = _parse_interval(interval)

    def _number_ok(self, x) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        if self.kind is int and not isinstance(x, int):
            return False
        if isinstance(x, float) and not math.isfinite(x):
            return False
        low, low_open, high, high_open = self._bounds
        return ((low is None or (x > low if low_open else x >= low))
                and (high is None or (x < high if high_open else x <= high)))

    def ok(self, value) -> bool:
        kind = self.kind
        if kind in (int, float):
            return self._number_ok(value)
        if kind is tuple:
            return isinstance(value, tuple) and all(self._number_ok(v) for v in value)
        if not isinstance(value, kind):
            return False
        if self.parse is not None:
            try:
                self.parse(value)
            except ValueError:
                return False
        return not self.choices or value in self.choices

    def describe(self) -> str:
        if self.words:
            return self.words
        if self.choices:
            return "one of " + ", ".join(self.choices)
        words = {int: "an int", float: "a finite number", bool: "true or false", str: "a string",
                 dict: "a JSON object (dict)", tuple: "a list of numbers"}[self.kind]
        if self.interval:
            words += (" each " if self.kind is tuple else " ") + (
                f"in {self.interval}" if self.interval[0] in "[(" else self.interval)
        return words + (f" ({self.note})" if self.note else "")


def _parse_interval(text: str):
    """(low, low_open, high, high_open) of ">= 1", "> 0", "[0, 1)", "(0, 1]" or ""."""
    text = text.strip()
    if not text:
        return None, False, None, False
    if text.startswith((">=", ">")):
        return float(text.lstrip(">=").strip()), not text.startswith(">="), None, False
    low, high = text[1:-1].split(",")
    return float(low), text[0] == "(", float(high), text[-1] == ")"


SECONDS = {"s": 1, "min": 60, "h": 3600}
_EVERY = re.compile(r"(\d+(?:\.\d+)?)(s|min|h)?")


def checkpoint_every(text: str):
    """``checkpoint_every``: ("steps", N), ("seconds", S) or None (off: "" or 0). A bare integer
    is a number of steps; a number with s, min or h a time. ValueError when it is neither."""
    text = text.strip().replace(" ", "")
    if text in ("", "0"):
        return None
    match = _EVERY.fullmatch(text)
    if not match or (match[2] is None and "." in match[1]) or float(match[1]) <= 0:
        raise ValueError(text)
    if match[2] is None:
        return "steps", int(match[1])
    return "seconds", float(match[1]) * SECONDS[match[2]]


# ONE table: every config key and every CLI flag that is not one, with its type and range. The
# CLI (`layerkit train`), `layerkit.train` and `Config()` all check values against it, so a new
# key is one field above and one line here (tests/training/test_config.py holds them to it).
RANGES = {
    # --- config keys ---
    "model": Range(str, note="a zoo name, see `layerkit models`, or auto: fitted to the data"),
    "model_options": Range(dict),
    "freeze_backbone": Range(bool),
    "unfreeze_at": Range(int, ">= 0", note="0 = never"),
    "unfreeze_lr": Range(float, "> 0"),
    "head_hidden": Range(int, ">= 0", note="0 = a linear head"),
    "features": Range(str, choices=("auto", "every_epoch")),
    "data": Range(str),
    "data_dir": Range(str),
    "data_keys": Range(str),
    "image_size": Range(int, ">= 0", note="0 = fitted to the data"),
    "on_bad_image": Range(str, choices=("error", "skip")),
    "test_data": Range(str),
    "test_split": Range(float, "(0, 1)"),
    "validation": Range(float, "[0, 1)", note="0 = no validation"),
    "train_limit": Range(int, ">= 0", note="0 = all"),
    "test_limit": Range(int, ">= 0", note="0 = all"),
    "augment": Range(str),
    "normalize": Range(str, choices=("mean_std", "zca", "unit", "signed", "none")),
    "data_on_device": Range(str, choices=("auto", "yes", "no")),
    "epochs": Range(int, ">= 1"),
    "batch_size": Range(int, ">= 0", note="0 = fitted to the data"),
    "optimizer": Range(str, choices=("sgd", "adam", "adamw", "rmsprop", "muon", "decoupled-sgd")),
    "optimizer_options": Range(dict),
    "lr": Range(float, "> 0"),
    "momentum": Range(float, "[0, 1]"),
    "nesterov": Range(bool),
    "weight_decay": Range(float, ">= 0"),
    "l2": Range(float, ">= 0"),
    "schedule": Range(str, choices=("constant", "step", "cosine", "warmup_exp", "onecycle", "linear")),
    "warmup_epochs": Range(float, ">= 0"),
    "step_epochs": Range(tuple, ">= 0"),
    "step_factor": Range(float, "> 0"),
    "decay_rate": Range(float, "> 0"),
    "min_lr": Range(float, ">= 0"),
    "start_lr": Range(float, ">= 0"),
    "lookahead": Range(bool),
    "label_smoothing": Range(float, "[0, 1)"),
    "ema": Range(float, "[0, 1)", note="0 = off"),
    "precision": Range(str, choices=("fp32", "bf16")),
    "seed": Range(int, "[0, 4294967296)"),
    "tta": Range(str, choices=("none", "flip", "6view")),
    "steps_per_epoch": Range(int, ">= 0", note="0 = a full pass"),
    "checkpoint_every": Range(str, parse=checkpoint_every,
                              words="a number of steps >= 1 (50) or a time > 0 with a unit s, min or h (30s, 10min, "
                                    "1.5h); \"\" or 0 = off (epoch checkpoints only)"),
    "report": Range(bool),
    "fast_compile": Range(bool),
    # --- CLI flags of `layerkit train` that are not config keys (a launch's, or --runs) ---
    "devices": Range(int, ">= 1"),
    "num_processes": Range(int, ">= 1"),
    "process_id": Range(int, ">= 0"),
    "init_timeout": Range(float, "> 0", note="seconds"),
    "runs": Range(int, ">= 1"),
}


class ConfigTypeError(TypeError, ValueError):
    """A config value of the wrong type (a ValueError too, so callers that catch bad values catch it)."""


def check(key: str, value, flag: bool = False):
    """`value` if it is in `key`'s range (`RANGES`), else a ValueError naming the key (the CLI's
    --flag with `flag`), the value and the range."""
    spec = RANGES[key]
    if not spec.ok(value):
        name = "--" + key.replace("_", "-") if flag else f"Config key '{key}'"
        raise ValueError(f"{name} must be {spec.describe()}. Received: {value!r}")
    return value


def _typed(name, value):
    """`value` of field `name` as passed from Python: an int for a float, a list for a tuple;
    another type is a `ConfigTypeError` naming the key, the value and what it takes."""
    kind = _TYPES[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    if kind is str and RANGES[name].parse is not None and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # checkpoint_every=50 from Python or JSON
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise ConfigTypeError(f"Config key '{name}' must be {RANGES[name].describe()}. "
                              f"Received: {value!r} ({type(value).__name__})")
    return value


def _coerce(name, value):
    """`value` for field `name` from text (key=value, a flag) or JSON (config.json)."""
    kind = _TYPES[name]
    if name == "tta" and isinstance(value, bool):  # runs saved when tta was a flag
        return "flip" if value else "none"
    if name == "tta" and isinstance(value, str) and value.lower() in ("true", "false"):
        return "flip" if value.lower() == "true" else "none"
    if not isinstance(value, str) or kind is str:
        return _typed(name, value)
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind is dict:
            parsed = json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError(value)
            return parsed
        if kind is tuple:
            return tuple(float(v) for v in value.strip("()[] ").split(",") if v.strip())
        return kind(value)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValueError(f"Config key '{name}' must be {RANGES[name].describe()}. Received: {value!r}") from None


def apply_overrides(config: Config, overrides) -> Config:
    """Apply ``key=value`` strings (or a dict). Dotted ``model_options.KEY=VALUE`` sets one option."""
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    config = dataclasses.replace(config, model_options=dict(config.model_options),
                                 optimizer_options=dict(config.optimizer_options))
    for key, value in items:
        if key.startswith(("model_options.", "model.", "optimizer_options.")):
            group = "optimizer_options" if key.startswith("optimizer_options.") else "model_options"
            options = getattr(config, group)
            opt = key.split(".", 1)[1]
            try:
                options[opt] = json.loads(value) if isinstance(value, str) else value
            except json.JSONDecodeError:
                options[opt] = value
            continue
        if key not in _TYPES:
            raise ValueError(f"Unknown config key '{key}'. Valid keys: {', '.join(keys())}")
        setattr(config, key, _coerce(key, value))
    validate(config)
    return config


def _split(text: str):
    if "=" not in text:
        raise ValueError(f"Overrides look like key=value. Received: {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


# optimizer_options of muon / decoupled-sgd (`layerkit.training.optimizers.MuonNesterov`):
# name -> (lowest value, below this), rates per 1024 examples, epochs of the whitening bias.
OPTIMIZER_OPTIONS = {
    "head_lr": (0, None),  # SGD rate of 2-D (dense) kernels; default lr
    "bias_lr": (0, None),  # SGD rate of 1-D variables (biases, BatchNorm); default lr
    "whiten_bias_lr": (0, None),  # SGD rate of PatchWhitening's bias; default lr
    "whiten_bias_epochs": (0, None),  # the whitening bias learns this long, then is frozen (default: all)
    "whiten_bias_decay": (0, 2),  # 1/true: its rate falls linearly to 0 over those epochs; 0: the schedule's
    "muon_momentum": (0, 1),  # Muon's Nesterov momentum (default 0.6)
    "muon_steps": (1, None),  # Newton-Schulz iterations (default 3)
}


def validate(config: Config) -> Config:
    """Every key in its range (`RANGES`), then the rules that join keys."""
    for key in keys():
        check(key, getattr(config, key))
    for key in ("data", "test_data"):
        value = getattr(config, key)
        if isinstance(value, str) and storage.is_remote(value) and storage.redact(value) != value:
            raise ValueError(f"Config key {key!r}: {storage.redact(value)} carries a user or a query (a signed URL's "
                             "token), which config.json would keep; give the bucket's gs:// or s3:// URL, with "
                             "credentials from the cloud's environment (AWS_PROFILE, application default credentials)")
    if config.data_keys:
        from layerkit.records.example import ImageKeys

        try:
            ImageKeys.parse(config.data_keys)
        except ValueError as err:
            raise ValueError(f"Config key 'data_keys': {err}") from None
    if config.optimizer_options and config.optimizer not in ("muon", "decoupled-sgd"):
        raise ValueError("Config key 'optimizer_options' applies to optimizer muon or decoupled-sgd. "
                         f"Received: optimizer={config.optimizer!r}, optimizer_options={config.optimizer_options}")
    if config.lookahead and config.optimizer not in ("muon", "decoupled-sgd"):
        raise ValueError(f"Config key 'lookahead' needs optimizer muon or decoupled-sgd. Received: optimizer={config.optimizer!r}")
    for key, value in config.optimizer_options.items():
        if key not in OPTIMIZER_OPTIONS:
            raise ValueError(f"Unknown optimizer_options key {key!r}. Valid keys: {', '.join(OPTIMIZER_OPTIONS)}")
        low, below = OPTIMIZER_OPTIONS[key]
        if isinstance(value, bool):
            value = int(value)
        if (not isinstance(value, (int, float)) or not math.isfinite(value) or not value >= low
                or (below is not None and not value < below)):
            span = f"in [{low}, {below})" if below is not None else f">= {low}"
            raise ValueError(f"optimizer_options.{key} must be a number {span}. Received: {value!r}")
    if config.optimizer in ("muon", "decoupled-sgd") and not 0 <= config.momentum < 1:
        raise ValueError(f"Config key 'momentum' must be in [0, 1) for {config.optimizer}. Received: {config.momentum}")
    if config.unfreeze_at and not config.freeze_backbone:
        raise ValueError("Config key 'unfreeze_at' is an epoch >= 1 at which a frozen backbone starts to train "
                         f"(needs freeze_backbone=true), or 0. Received: unfreeze_at={config.unfreeze_at}, "
                         f"freeze_backbone={config.freeze_backbone}")
    if config.unfreeze_at >= config.epochs:
        raise ValueError(f"Config key 'unfreeze_at' ({config.unfreeze_at}) must be below epochs ({config.epochs}): "
                         "the second phase needs at least one epoch")
    return config
