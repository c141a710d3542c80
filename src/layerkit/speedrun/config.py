"""`SpeedrunConfig`: every setting of the CIFAR-10 speed run, with its unit, and the presets.

The optimiser settings use airbench's *decoupled* convention, so that each can be tuned on its
own and published values carry over:

- a learning rate is per 1024 examples and independent of the momentum: for Nesterov momentum
  `m` the step on the gradient of the summed loss is ``lr / (1024 * (1 + 1 / (1 - m)))``;
- `weight_decay` is the decay per 1024 examples, independent of the learning rate.

    layerkit speedrun cifar10                       # preset "short" (Muon), 5 runs
    layerkit speedrun cifar10 --preset long --runs 3
"""

import dataclasses
from dataclasses import dataclass

FLIPS = ("alternate", "random", "none")
OPTIMIZERS = ("muon", "sgd")


@dataclass
class SpeedrunConfig:
    # === Data ===
    data: str = "cifar10"  # cifar10, sample (the embedded 5k/1k) or a path
    data_dir: str = ""
    train_limit: int = 0  # first N of a seeded shuffle of the train split (0 = all)
    test_limit: int = 0
    # === Net: 2x2 patch whitening, three conv-pool-BN blocks, global max pool, linear head ===
    widths: tuple = (64, 256, 256)  # channels of the three blocks
    block_depth: int = 2  # convolutions per block; 3 adds a residual pair (the long preset)
    whiten_kernel: int = 2  # patch size of the frozen whitening convolution
    whiten_eps: float = 5e-4  # added to the patch covariance's eigenvalues
    whiten_samples: int = 5000  # training images (a random sample each run) whose patches set the whitening
    bn_momentum: float = 0.6  # Keras convention: moving = m * moving + (1 - m) * batch
    bn_epsilon: float = 1e-12
    head_scale: float = 0.0  # logits = head(x) * head_scale; 0 = 1 / widths[-1]
    head_std: float = 1.0  # std of the head's initial weights; 0 = uniform(+-1/sqrt(fan_in))
    # === Optimisation ===
    optimizer: str = "muon"  # muon: Muon on the conv filters, Nesterov SGD on the rest; sgd: SGD on all
    epochs: float = 8.0  # passes over the train split (fractions allowed)
    batch_size: int = 2000
    lr: float = 11.5  # SGD on the filters (optimizer=sgd), per 1024 examples, decoupled
    head_lr: float = 5260.0  # the linear head, per 1024 examples, decoupled
    bias_lr: float = 416.0  # BatchNorm biases, per 1024 examples, decoupled
    whiten_bias_lr: float = 416.0  # the whitening bias, per 1024 examples, decoupled
    momentum: float = 0.85  # Nesterov momentum of the SGD groups
    weight_decay: float = 0.0157  # per 1024 examples, decoupled from the lr; SGD groups only
    muon_lr: float = 0.24  # Muon step (filters renormalised to norm sqrt(out) each step)
    muon_momentum: float = 0.6
    muon_steps: int = 3  # Newton-Schulz iterations
    warmup: float = 0.0  # fraction of the steps rising from start_lr to the peak
    start_lr: float = 1.0  # lr multiplier at step 0
    end_lr: float = 0.0  # lr multiplier at the last step
    whiten_bias_epochs: float = 3.0  # the whitening bias learns for this long, then is frozen
    whiten_bias_decay: bool = True  # True: its lr falls linearly to 0 over those epochs
    lookahead: bool = False  # every 5 steps pull the weights to an EMA (decay 0.95^5 (t/T)^3)
    label_smoothing: float = 0.2
    # === Augmentation (on the device) and test-time augmentation ===
    flip: str = "alternate"  # alternate: each image flips every other epoch; random; none
    translate: int = 2  # largest shift in pixels, reflect fill
    cutout: int = 0  # side of a square set to the mean (0 = none)
    tta_level: int = 2  # 0 none, 1 mirror, 2 mirror + 1 px translations (6 views)
    # === Runs ===
    precision: str = "bf16"  # bf16 or fp32
    runs: int = 5
    seed: int = 0

    def replace(self, **changes) -> "SpeedrunConfig":
        return dataclasses.replace(self, **changes)


# The presets: "short" races airbench94_muon, "short-sgd" airbench94 (legacy), "long" airbench96.
PRESETS = {
    "short": SpeedrunConfig(),
    "short-sgd": SpeedrunConfig(
        optimizer="sgd", epochs=9.9, batch_size=1024, lr=11.5, head_lr=11.5, bias_lr=11.5 * 64,
        whiten_bias_lr=11.5, weight_decay=0.0153, warmup=0.23, start_lr=0.2, end_lr=0.07,
        whiten_bias_decay=False, lookahead=True, head_scale=1 / 9, head_std=0.0),
    "long": SpeedrunConfig(
        widths=(128, 384, 512), block_depth=3, bn_momentum=0.9, optimizer="sgd", epochs=37.0,
        batch_size=1024, lr=9.0, head_lr=9.0, bias_lr=9.0 * 64, whiten_bias_lr=9.0,
        weight_decay=0.012, warmup=0.1, start_lr=0.2, end_lr=0.0, whiten_bias_decay=False,
        lookahead=True, head_scale=1 / 9, head_std=0.0, translate=4, cutout=12),
}


def preset(name: str) -> SpeedrunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown speedrun preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace()


def smoke_config(config: SpeedrunConfig) -> SpeedrunConfig:
    """Seconds on CPU: 512 train / 256 test images of the embedded sample, one epoch, 2 runs."""
    return config.replace(data="sample", data_dir="", train_limit=512, test_limit=256, epochs=1.0,
                          batch_size=128, widths=(8, 16, 16), runs=2, whiten_samples=256)


def validate(config: SpeedrunConfig) -> SpeedrunConfig:
    """Return `config`, or raise ValueError naming the setting, what was received and what is expected."""
    for key in ("batch_size", "runs", "block_depth", "whiten_kernel", "whiten_samples", "muon_steps"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"speedrun {key} must be a positive integer. Received: {key}={value!r}")
    if config.block_depth not in (2, 3):
        raise ValueError(f"speedrun block_depth must be 2 or 3. Received: block_depth={config.block_depth}")
    if not config.epochs > 0:
        raise ValueError(f"speedrun epochs must be > 0. Received: epochs={config.epochs}")
    if len(config.widths) != 3 or any(isinstance(w, bool) or int(w) != w or w < 1 for w in config.widths):
        raise ValueError(f"speedrun widths must be three positive channel counts. Received: {config.widths!r}")
    choices = {"precision": ("bf16", "fp32"), "optimizer": OPTIMIZERS, "flip": FLIPS, "tta_level": (0, 1, 2)}
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            raise ValueError(f"speedrun {key} must be one of {allowed}. Received: {key}={getattr(config, key)!r}")
    for key in ("lr", "head_lr", "bias_lr", "whiten_bias_lr", "weight_decay", "muon_lr", "head_scale",
                "head_std", "whiten_bias_epochs", "whiten_eps", "start_lr", "end_lr"):
        if not getattr(config, key) >= 0:
            raise ValueError(f"speedrun {key} must be >= 0. Received: {key}={getattr(config, key)!r}")
    for key in ("momentum", "muon_momentum", "bn_momentum", "warmup", "label_smoothing"):
        if not 0 <= getattr(config, key) < 1:
            raise ValueError(f"speedrun {key} must be in [0, 1). Received: {key}={getattr(config, key)!r}")
    for key in ("translate", "cutout"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 32:
            raise ValueError(f"speedrun {key} must be a whole number of pixels in [0, 32). Received: {key}={value!r}")
    return config
