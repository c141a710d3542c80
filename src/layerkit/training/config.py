"""A run's configuration: one flat, typed record, made by a recipe and adjusted by overrides.

Recipes (``layerkit.training.recipes``) return a `Config`; the CLI applies
``key=value`` overrides with `apply_overrides`, which converts each value to the
field's type and rejects unknown keys with the list of valid ones.
"""

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass
class Config:
    # === Model ===
    model: str = "cnn"  # a zoo name, see `layerkit models`; auto: fitted to the data (layerkit.training.fit)
    model_options: dict = field(default_factory=dict)  # passed to layerkit.models.create
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
    normalize: str = "mean_std"  # mean_std (fitted on train), zca, unit (x/255), signed (x/127.5-1)
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
    report: bool = True  # write plots and report.md at the end
    fast_compile: bool = False  # XLA optimisations mostly off: ~half the compile time, steps ~1.3-1.5x slower (smoke runs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown config keys {sorted(unknown)}. Valid keys: {', '.join(keys())}")
        config = cls()
        for name, value in values.items():
            setattr(config, name, _coerce(name, value))
        return config


def keys() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


_TYPES = {f.name: f.type for f in dataclasses.fields(Config)}


def _coerce(name, value):
    kind = _TYPES[name]
    if name == "tta" and isinstance(value, bool):  # runs saved when tta was a flag
        return "flip" if value else "none"
    if name == "tta" and isinstance(value, str) and value.lower() in ("true", "false"):
        return "flip" if value.lower() == "true" else "none"
    try:
        if isinstance(value, str):
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
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(value)
        return value
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValueError(
            f"Config key '{name}' expects {kind.__name__}. Received: {value!r}"
        ) from None


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


CHOICES = {
    "optimizer": ("sgd", "adam", "adamw", "rmsprop", "muon", "decoupled-sgd"),
    "schedule": ("constant", "step", "cosine", "warmup_exp", "onecycle", "linear"),
    "precision": ("fp32", "bf16"),
    "normalize": ("mean_std", "zca", "unit", "signed"),
    "data_on_device": ("auto", "yes", "no"),
    "on_bad_image": ("error", "skip"),
    "tta": ("none", "flip", "6view"),
}
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
    for key, choices in CHOICES.items():
        if getattr(config, key) not in choices:
            raise ValueError(
                f"Config key '{key}' must be one of {', '.join(choices)}. Received: {getattr(config, key)!r}"
            )
    if config.epochs < 1:
        raise ValueError(f"Config key 'epochs' must be >= 1. Received: {config.epochs}")
    if config.batch_size < 0:
        raise ValueError(f"Config key 'batch_size' must be >= 1, or 0 (fitted to the data). Received: {config.batch_size}")
    if config.lr <= 0:
        raise ValueError(f"Config key 'lr' must be > 0. Received: {config.lr}")
    if not 0 <= config.label_smoothing < 1:
        raise ValueError(f"Config key 'label_smoothing' must be in [0, 1). Received: {config.label_smoothing}")
    if not 0 <= config.ema < 1:
        raise ValueError(f"Config key 'ema' must be in [0, 1). Received: {config.ema}")
    if not 0 <= config.validation < 1:
        raise ValueError("Config key 'validation' must be a fraction in [0, 1) of the training images "
                         f"(0 = no validation). Received: {config.validation!r}")
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
        if not isinstance(value, (int, float)) or not value >= low or (below is not None and not value < below):
            span = f"in [{low}, {below})" if below is not None else f">= {low}"
            raise ValueError(f"optimizer_options.{key} must be a number {span}. Received: {value!r}")
    if config.optimizer in ("muon", "decoupled-sgd") and not 0 <= config.momentum < 1:
        raise ValueError(f"Config key 'momentum' must be in [0, 1) for {config.optimizer}. Received: {config.momentum}")
    if not 0 < config.test_split < 1:
        raise ValueError(f"Config key 'test_split' must be a fraction in (0, 1). Received: {config.test_split!r}")
    return config
