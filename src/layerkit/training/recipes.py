"""Recipes: small functions returning a `Config`, one per reference experiment.

Each docstring says what the recipe reproduces and the result to expect. Every recipe
has a ``--smoke`` variant (`smoke`) that keeps the model, optimizer, schedule,
augmentation and TTA but trains two steps on a few images of the embedded sample,
compiled fast, so a test can run it in seconds.

    layerkit train --recipe wrn-40-2-cifar10 --data cifar10
    layerkit train --recipe wrn-40-2-cifar10 --smoke
"""

import dataclasses

from layerkit.training.config import Config, validate

RECIPES = {}


def recipe(name):
    def decorator(fn):
        RECIPES[name] = fn
        return fn

    return decorator


def names() -> list[str]:
    return sorted(RECIPES)


def get(name: str, smoke_run: bool = False) -> Config:
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}. Valid recipes: {', '.join(names())}")
    config = RECIPES[name]()
    return validate(_no_download(smoke(config)) if smoke_run else config)


def describe(name: str) -> str:
    doc = (RECIPES[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def smoke(config: Config) -> Config:
    """The same recipe for seconds: its model, optimizer, schedule, augmentation and TTA, on a few
    images of the embedded sample, compiled fast. It exists to catch wiring bugs.

    One epoch of two steps of 8 images (the second step starts from the state the first left),
    16 validation images (where the recipe validates) and 16 test images, two batches each (no
    partial batch, so no program is compiled twice), then the checkpoints, the test evaluation
    with the recipe's TTA and the report, as in a real run. XLA compiles with most optimisations
    off (``fast_compile``): compilation is most of a smoke run's time, and two steps do not
    notice running slower. Every recipe's smoke run takes under 30 s on 2 CPU cores with an
    empty compilation cache (docs/benchmarks.md, "`--smoke` wall time per recipe").

        layerkit train --recipe xception-flowers --smoke
    """
    size = config.image_size or 0
    if config.model == "xception":
        size = 71  # Xception's smallest input
    elif size > 64:
        size = 32
    return dataclasses.replace(
        config, data="sample", data_dir="", test_data="", image_size=size, epochs=1, batch_size=8,
        train_limit=16, test_limit=16, model_options=dict(config.model_options),
        warmup_epochs=min(config.warmup_epochs, 0.5), step_epochs=(), fast_compile=True,
    )


def _no_download(config: Config) -> Config:
    if config.model_options.get("weights") == "imagenet":
        config.model_options["weights"] = None  # smoke runs never download
    return config


# === The default: the README's main job ===


@recipe("sample")
def sample() -> Config:
    """The default: the speed run's training, its net, batch and image size fitted to the data (embedded sample).

    speedrun-94's optimizer, schedule and augmentation for 6 epochs, fp32 (a CPU's precision),
    with 0.1 of the training images held out to pick the best epoch; ``model=auto``,
    ``batch_size=0`` and ``image_size=0`` are fitted to the data (`layerkit.training.fit`): on the
    embedded sample, airbench94 at widths 16/64/64, batch 256, 32x32 as stored. Measured there:
    69.5% (end of training), 71.4% with 6-view TTA on the 1,000 sample test images after 113 s
    of training on 2 CPU cores (docs/benchmarks.md, "The default job").

        layerkit train --data my-photos      # a folder of class folders, from 2 images a class
    """
    return dataclasses.replace(
        speedrun_94(), data="sample", validation=0.1, model="auto", model_options={},
        epochs=6, batch_size=0, image_size=0, precision="fp32")


# === The CIFAR-10 speed run (airbench, Keller Jordan 2024) ===


def _speedrun(**changes) -> Config:
    # Shared by the speed-run recipes: airbench's settings, in its decoupled units (rates per
    # 1024 examples, independent of the momentum; weight decay per 1024 examples). All 50,000
    # training images train (validation=0: the run is judged on its end-of-training test
    # accuracy, as airbench's), the data stays on the accelerator, label smoothing 0.2, 6-view TTA.
    return Config(**{
        "data": "cifar10", "validation": 0.0, "normalize": "mean_std", "data_on_device": "auto",
        "label_smoothing": 0.2, "tta": "6view", "precision": "bf16", "schedule": "linear", **changes})


@recipe("speedrun-94")
def speedrun_94() -> Config:
    """airbench94_muon's settings: Muon on the filters, 8 epochs of 2,000 (targets: docs/benchmarks.md).

    CPU proxy (docs/benchmarks.md): ``--data sample --batch-size 256 --epochs 4 --runs 3
    model_options.widths=[16,64,64] precision=fp32``: 66.03% +- 0.50 by the former speed-run loop.
    """
    return _speedrun(
        model="airbench94", augment="airbench94", epochs=8, batch_size=2000,
        optimizer="muon", lr=0.24,  # the Muon step of the filters (each bank kept at norm sqrt(out))
        momentum=0.85,  # Nesterov momentum of the SGD groups
        weight_decay=0.0157,  # per 1024 examples, SGD groups
        optimizer_options={"head_lr": 5260.0, "bias_lr": 416.0, "whiten_bias_lr": 416.0,  # per 1024 examples
                           "muon_momentum": 0.6, "muon_steps": 3,
                           "whiten_bias_epochs": 3, "whiten_bias_decay": True},  # then frozen
        warmup_epochs=0, start_lr=0.24, min_lr=0.0)  # linear from the peak to 0


@recipe("speedrun-94-sgd")
def speedrun_94_sgd() -> Config:
    """airbench94's settings: decoupled Nesterov SGD + lookahead, 10 epochs of 1,024 (airbench: 9.9).

    CPU proxy: ``--data sample --batch-size 256 --epochs 4 --runs 3 warmup_epochs=0.92
    model_options.widths=[16,64,64] precision=fp32``: 53.27% +- 1.17 by the former loop.
    """
    return _speedrun(
        model="airbench94", model_options={"head_scale": 1 / 9, "head_std": 0.0}, augment="airbench94",
        epochs=10, batch_size=1024, optimizer="decoupled-sgd", lr=11.5,  # per 1024 examples
        momentum=0.85, weight_decay=0.0153, lookahead=True,
        optimizer_options={"head_lr": 11.5, "bias_lr": 11.5 * 64, "whiten_bias_lr": 11.5,
                           "whiten_bias_epochs": 3, "whiten_bias_decay": False},
        warmup_epochs=2.3, start_lr=11.5 * 0.2, min_lr=11.5 * 0.07)  # 23% of the steps rising


@recipe("speedrun-96")
def speedrun_96() -> Config:
    """airbench96's settings: wider, residual, 4 px translations and cutout, SGD + lookahead, 37 epochs.

    CPU proxy: ``--data sample --batch-size 256 --epochs 8 --runs 3 warmup_epochs=0.8
    model_options.widths=[16,48,64] precision=fp32``: 59.00% +- 0.70 by the former loop.
    """
    return _speedrun(
        model="airbench96", augment="airbench96", epochs=37, batch_size=1024,
        optimizer="decoupled-sgd", lr=9.0, momentum=0.85, weight_decay=0.012, lookahead=True,
        optimizer_options={"head_lr": 9.0, "bias_lr": 9.0 * 64, "whiten_bias_lr": 9.0,
                           "whiten_bias_epochs": 3, "whiten_bias_decay": False},
        warmup_epochs=3.7, start_lr=9.0 * 0.2, min_lr=0.0)  # 10% of the steps rising


# === CIFAR-10 tutorial ===


@recipe("svgg-cifar10")
def svgg_cifar10() -> Config:
    """The CIFAR-10 tutorial's simplified VGG: RMSprop, augmentation scheme 1, feature-wise normalisation.

    Reproduces its 86.4% on lossless CIFAR-10 (125 epochs); on the shared JPEG copy expect
    a few points less.
    """
    return Config(
        model="svgg", data="cifar10", augment="svgg-scheme1",
        normalize="mean_std", epochs=125, batch_size=64, optimizer="rmsprop", lr=1e-3,
        schedule="step", step_epochs=(75, 100), step_factor=0.5, l2=1e-4,
    )


@recipe("wrn-40-2-cifar10")
def wrn_40_2_cifar10() -> Config:
    """WRN-40-2 with dropout 0.3: SGD Nesterov 0.9, weight decay 5e-4, lr 0.1 stepped x0.2 at 60/120/160.

    The tutorial reached 89.3% on lossless CIFAR-10 (the WRN paper 95%); flips and 4 px
    reflect crops.
    """
    return Config(
        model="wrn-40-2", model_options={"dropout": 0.3}, data="cifar10",
        augment="cifar", normalize="mean_std", epochs=200, batch_size=128, optimizer="sgd", lr=0.1,
        momentum=0.9, nesterov=True, l2=2.5e-4,  # = torch weight_decay 5e-4 (grad 2 * l2 * w)
        schedule="step", step_epochs=(60, 120, 160), step_factor=0.2,
    )


# === Flowers lab (Keras on TPU) ===


@recipe("cnn-flowers")
def cnn_flowers() -> Config:
    """The flowers lab's convnet on 192x192 flowers: Adam, flips; the lab reports ~70%."""
    return Config(
        model="cnn", data="flowers", augment="flowers",
        normalize="unit", epochs=40, batch_size=64, optimizer="adam", lr=1e-3, schedule="cosine",
    )


@recipe("squeezenet-flowers")
def squeezenet_flowers() -> Config:
    """The flowers lab's SqueezeNet (BatchNorm momentum 0.9), flip + saturation, 35 epochs.

    The lab reached 80% on its flowers split; lr ramp-up then exponential decay.
    """
    return Config(
        model="squeezenet", model_options={"momentum": 0.9}, data="flowers",
        augment="flowers", normalize="unit", epochs=35, batch_size=64, optimizer="adam", lr=5e-3,
        schedule="warmup_exp", warmup_epochs=5, decay_rate=0.85, min_lr=1e-5,
    )


@recipe("xception-flowers")
def xception_flowers() -> Config:
    """Fine-tuning Xception (ImageNet weights, all trainable) on flowers: lr ramp-up then exponential decay.

    The flowers lab reports ~95% with ImageNet weights. The weights come through
    `layerkit.models.pretrained`: the cache ($LAYERKIT_WEIGHTS_DIR, else ~/.keras/models), else
    Keras's download (hash checked); offline, ``model_options.weights=PATH`` (the no-top file or
    its folder). No weights: a clear error naming where it looked, never a random backbone.
    """
    return Config(
        model="xception", model_options={"weights": "imagenet"}, data="flowers",
        augment="flowers", normalize="none", epochs=12, batch_size=32, optimizer="adam", lr=1e-4,
        schedule="warmup_exp", warmup_epochs=3, decay_rate=0.8, min_lr=1e-6,
    )


# === Transfer learning from ImageNet weights ===


@recipe("transfer")
def transfer() -> Config:
    """EfficientNet-Lite0 with its ImageNet weights (offline: the pretrained extra), frozen; a new head on its features.

    Point it at any folder of photos (one subfolder per class): ``layerkit train --recipe
    transfer --data PATH``. The backbone is frozen and nothing random runs before it, so its
    features are computed once per image and the head trains on them (training/transfer.py).
    Images are resized to 224, the size the weights were trained at; the model takes pixels
    0..255 and preprocesses them itself. Target on flowers: >= 90% test accuracy in <= 10 min on
    2 CPU cores (docs/benchmarks.md).
    """
    return Config(
        model="efficientnet-lite0", model_options={"weights": "imagenet", "dropout": 0.2},
        freeze_backbone=True, data="flowers", image_size=224, augment="none", normalize="none",
        epochs=40, batch_size=64, optimizer="adam", lr=1e-3, schedule="cosine", label_smoothing=0.1,
    )


# === RevNet paper (Gomez et al. 2017) ===


def _revnet_paper(model: str) -> Config:
    # 80k steps of batch 100 = 160 epochs; lr 0.1 divided by 10 at 40k and 60k steps.
    return Config(
        model=model, data="cifar10", augment="cifar", normalize="mean_std", epochs=160,
        batch_size=100, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False,
        l2=1e-4,  # = the paper's weight decay 2e-4 (gradient 2 * l2 * w)
        schedule="step", step_epochs=(80, 120), step_factor=0.1,
    )


@recipe("revnet-38-cifar10")
def revnet_38_cifar10() -> Config:
    """RevNet-38 (reversible, activations recomputed in the backward pass) on CIFAR-10.

    The paper: 7.24% error on lossless CIFAR-10 vs 7.14% for ResNet-32 (recipe
    resnet-32-cifar10, the same training); expect both a little worse on the JPEG copy.
    """
    return _revnet_paper("revnet-38")


@recipe("resnet-32-cifar10")
def resnet_32_cifar10() -> Config:
    """ResNet-32 (pre-activation) with the RevNet paper's training: its 7.14% error baseline."""
    return _revnet_paper("resnet-32")
