"""A CIFAR-10 speed run: the fastest way layerkit knows to a given test accuracy.

In the spirit of the airbench speed runs, written with layerkit's own pieces:

- the data is decoded once by layerkit's `Pipeline` and kept on the device as uint8; each
  step sends only a batch of indices;
- augmentation (random flip, 2 px reflect translation: `layerkit.augment`) runs on the
  device inside the jitted step, as the first layers of the model;
- bfloat16 compute (Keras ``mixed_bfloat16``), float32 weights;
- a compact net: a 3x3 stem, three conv-pool-conv blocks, global max pool, a scaled
  linear head;
- SGD Nesterov on a one-cycle schedule (`layerkit.training.schedules.OneCycle`), label
  smoothing, decoupled weight decay on kernels;
- test-time augmentation: the mean of the logits of the image and its mirror.

The step is a `jax.jit` of Keras's stateless API (``model.stateless_call``,
``optimizer.stateless_apply``), compiled ahead of time so that the compilation is timed
apart from the training. Each of the runs starts from new weights and a new data order.

    layerkit speedrun cifar10                    # full CIFAR-10, 5 runs (a GPU run)
    layerkit speedrun cifar10 --smoke            # seconds on CPU: 512 sample images
"""

import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

CIFAR_MEAN = (125.3, 122.9, 113.9)  # per channel, 0..255
CIFAR_STD = (63.0, 62.1, 66.7)


@dataclass
class SpeedrunConfig:
    # === Data ===
    data: str = "cifar10"  # cifar10, sample (the embedded 5k/1k) or a path
    data_dir: str = ""
    train_limit: int = 0  # first N of a seeded shuffle of the train split (0 = all)
    test_limit: int = 0
    # === Net ===
    widths: tuple = (64, 256, 256)  # channels of the three blocks; the stem has widths[0] // 2
    head_scale: float = 1 / 9  # logits are scaled down: a softer start for the linear head
    bn_momentum: float = 0.6  # BatchNorm moving-statistics momentum (few, large steps)
    # === Optimisation ===
    epochs: float = 10.0  # passes over the train split (fractions allowed)
    batch_size: int = 1024
    lr: float = 2.0  # peak learning rate of the one-cycle schedule, for batch 1024
    warmup: float = 0.2  # fraction of the steps spent rising to the peak
    momentum: float = 0.85  # SGD Nesterov momentum
    weight_decay: float = 5e-5  # decoupled, per step, scaled by lr; kernels only
    label_smoothing: float = 0.2
    translate: int = 2  # largest translation, pixels (reflect fill)
    precision: str = "bf16"  # bf16 or fp32
    # === Runs ===
    runs: int = 5
    seed: int = 0
    tta: bool = True  # test-time augmentation: average with the mirrored image

    def replace(self, **changes) -> "SpeedrunConfig":
        return dataclasses.replace(self, **changes)


def smoke_config(config: SpeedrunConfig) -> SpeedrunConfig:
    """Seconds on CPU: 512 train / 256 test images of the embedded sample, one epoch, 2 runs."""
    return config.replace(data="sample", data_dir="", train_limit=512, test_limit=256, epochs=1.0,
                          batch_size=128, widths=(8, 16, 16), runs=2)


def validate(config: SpeedrunConfig) -> SpeedrunConfig:
    for key in ("batch_size", "runs"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"speedrun {key} must be a positive integer. Received: {key}={value!r}")
    if not config.epochs > 0:
        raise ValueError(f"speedrun epochs must be > 0. Received: epochs={config.epochs}")
    if len(config.widths) != 3 or any(int(w) < 1 for w in config.widths):
        raise ValueError(f"speedrun widths must be three positive channel counts. Received: {config.widths!r}")
    if config.precision not in ("bf16", "fp32"):
        raise ValueError(f"speedrun precision must be bf16 or fp32. Received: {config.precision!r}")
    if not 0 <= config.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1). Received: {config.label_smoothing}")
    return config


# === Data, decoded once and kept on the device ===


def load_arrays(config: SpeedrunConfig):
    """(train images, train labels, test images, test labels) as numpy uint8 / int32."""
    from layerkit.data.pipeline import Pipeline
    from layerkit.data.sources import Subset, open_dataset

    out = []
    for split, limit in (("train", config.train_limit), ("test", config.test_limit)):
        source = open_dataset(config.data, split, config.data_dir or None)
        if limit and limit < len(source):
            keep = np.random.default_rng([config.seed, 7]).permutation(len(source))[:limit]
            source = Subset(source, np.sort(keep))
        pipe = Pipeline(source, batch_size=1, shuffle=False, cache_decoded=True, prefetch=0)
        images = pipe.read(np.arange(len(pipe.labels)))
        if images.shape[1:] != (32, 32, 3):
            raise ValueError(f"the CIFAR-10 speed run takes 32x32 RGB images. Received: {images.shape[1:]}")
        out += [images, pipe.labels.astype(np.int32)]
    if len(out[0]) < config.batch_size:
        raise ValueError(f"{len(out[0])} training images make no batch of {config.batch_size}: "
                         "lower batch_size or raise train_limit")
    return tuple(out)


# === The net ===


def build_net(config: SpeedrunConfig, num_classes: int = 10):
    """uint8 pixels -> flip, translate (training only) -> normalise -> compact conv net -> logits."""
    import keras

    from layerkit import augment

    layers = keras.layers

    def conv_bn(x, width, name):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum, epsilon=1e-5, name=f"{name}_bn")(x)
        return layers.Activation("gelu", name=f"{name}_gelu")(x)

    inputs = keras.Input((32, 32, 3), dtype="uint8", name="pixels")
    x = layers.RandomFlip("horizontal", name="flip")(inputs)
    x = augment.RandomReflectTranslate(config.translate / 32, name="translate")(x)
    x = layers.Normalization(mean=CIFAR_MEAN, variance=[s * s for s in CIFAR_STD], name="normalize")(x)
    x = conv_bn(x, max(1, config.widths[0] // 2), "stem")
    for i, width in enumerate(config.widths):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{i}_conv1")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        x = layers.BatchNormalization(momentum=config.bn_momentum, epsilon=1e-5, name=f"block{i}_bn1")(x)
        x = layers.Activation("gelu", name=f"block{i}_gelu1")(x)
        x = conv_bn(x, width, f"block{i}_2")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    outputs = layers.Rescaling(config.head_scale, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="speedrun_net")


# === The run ===


class Speedrun:
    """Compiled train and evaluation steps for one `SpeedrunConfig`; `run(seed)` trains once."""

    def __init__(self, config: SpeedrunConfig, arrays):
        import jax
        import keras

        from layerkit.training.run import precision
        from layerkit.training.schedules import OneCycle

        self.config = config = validate(config)
        train_x, train_y, test_x, test_y = arrays
        self.n_train, self.n_test = len(train_x), len(test_x)
        self.eval_batch = min(self.n_test, 2000)
        pad = -self.n_test % self.eval_batch  # whole evaluation batches; label -1 never counts
        test_x = np.concatenate([test_x, np.zeros((pad, *test_x.shape[1:]), test_x.dtype)])
        test_y = np.concatenate([test_y, np.full(pad, -1, test_y.dtype)])
        self.train_x, self.train_y, self.test_x, self.test_y = (
            jax.device_put(a) for a in (train_x, train_y, test_x, test_y))
        self.steps_per_epoch = self.n_train // config.batch_size
        self.total_steps = max(1, int(round(config.epochs * self.steps_per_epoch)))
        with precision(config.precision):
            keras.utils.set_random_seed(config.seed)
            self.model = build_net(config)
        lr = config.lr * config.batch_size / 1024
        schedule = OneCycle(lr, self.total_steps, max(1, int(config.warmup * self.total_steps)), start_lr=lr / 10)
        self.optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True,
                                              weight_decay=config.weight_decay)
        self.optimizer.exclude_from_weight_decay(var_names=["gamma", "beta"])
        self.optimizer.build(self.model.trainable_variables)
        self._optimizer_start = [np.asarray(v.value) for v in self.optimizer.variables]  # step 0, zero slots
        self.compile_seconds = self._compile()

    # --- state ---

    def initial_state(self, seed: int):
        """New weights (from `seed`) and a fresh optimizer, as device arrays."""
        import jax
        import keras

        from layerkit.training.run import precision

        with precision(self.config.precision):
            keras.utils.set_random_seed(seed)
            fresh = build_net(self.config)
        values = [[v.value for v in fresh.trainable_variables], [v.value for v in fresh.non_trainable_variables]]
        opt = [jax.numpy.asarray(v) for v in self._optimizer_start]  # fresh buffers: steps donate them
        return (values[0], values[1], opt)

    # --- steps ---

    def _loss(self, trainable, non_trainable, images, labels):
        import jax
        import jax.numpy as jnp

        logits, non_trainable = self.model.stateless_call(trainable, non_trainable, images, training=True)
        logits = logits.astype(jnp.float32)
        s = self.config.label_smoothing
        target = jax.nn.one_hot(labels, logits.shape[-1]) * (1 - s) + s / logits.shape[-1]
        loss = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits), axis=-1))
        return loss, non_trainable

    def _train_step(self, state, train_x, train_y, idx):
        import jax

        trainable, non_trainable, opt = state
        images, labels = train_x[idx], train_y[idx]  # the batch gathered on the device
        (loss, non_trainable), grads = jax.value_and_grad(self._loss, has_aux=True)(
            trainable, non_trainable, images, labels)
        trainable, opt = self.optimizer.stateless_apply(opt, grads, trainable)
        return (trainable, non_trainable, opt), loss

    def _logits(self, trainable, non_trainable, images):
        import jax.numpy as jnp

        logits, _ = self.model.stateless_call(trainable, non_trainable, images, training=False)
        logits = logits.astype(jnp.float32)
        if self.config.tta:
            mirrored, _ = self.model.stateless_call(trainable, non_trainable, images[:, :, ::-1], training=False)
            logits = (logits + mirrored.astype(jnp.float32)) / 2
        return logits

    def _eval_step(self, trainable, non_trainable, test_x, test_y, start):
        import jax
        import jax.numpy as jnp

        images = jax.lax.dynamic_slice_in_dim(test_x, start, self.eval_batch)
        labels = jax.lax.dynamic_slice_in_dim(test_y, start, self.eval_batch)
        return jnp.sum(jnp.argmax(self._logits(trainable, non_trainable, images), -1) == labels)

    def _compile(self) -> float:
        import jax

        state = self.initial_state(self.config.seed)
        idx = np.zeros(self.config.batch_size, np.int32)
        start = time.perf_counter()
        # The data sets are arguments, not closed-over constants: never baked into the program.
        self.train_step = jax.jit(self._train_step, donate_argnums=0).lower(
            state, self.train_x, self.train_y, idx).compile()
        self.eval_step = jax.jit(self._eval_step).lower(
            state[0], state[1], self.test_x, self.test_y, np.int32(0)).compile()
        return time.perf_counter() - start

    # --- one run ---

    def run(self, seed: int) -> dict:
        """Train from new weights (seed `seed`); the accuracy on the test split and the seconds."""
        import jax

        state = self.initial_state(seed)
        jax.block_until_ready(state)
        rng = np.random.default_rng([seed, 11])
        b, steps = self.config.batch_size, self.steps_per_epoch
        orders = [rng.permutation(self.n_train)[: steps * b].reshape(steps, b).astype(np.int32)
                  for _ in range(math.ceil(self.total_steps / steps))]  # the data order, made up front
        start = time.perf_counter()
        loss = None
        for step in range(self.total_steps):
            state, loss = self.train_step(state, self.train_x, self.train_y, orders[step // steps][step % steps])
        jax.block_until_ready(state)
        seconds = time.perf_counter() - start
        return {"seed": seed, "train_seconds": seconds, "final_loss": float(loss),
                "test_accuracy": self.evaluate(state)}

    def evaluate(self, state) -> float:
        correct = sum(int(self.eval_step(state[0], state[1], self.test_x, self.test_y, np.int32(s)))
                      for s in range(0, self.n_test, self.eval_batch))
        return correct / self.n_test


def speedrun(config: SpeedrunConfig, out=print) -> dict:
    """Compile once, train `config.runs` times; mean and spread of the test accuracy and the
    training seconds (compilation stated apart)."""
    import jax

    config = validate(config)
    start = time.perf_counter()
    arrays = load_arrays(config)
    load_seconds = time.perf_counter() - start
    devices = [str(d) for d in jax.local_devices()[:1]]
    out(f"speedrun: {len(arrays[0])} train / {len(arrays[2])} test images of {config.data} decoded "
        f"in {load_seconds:.1f} s, kept on {devices[0]}")
    runner = Speedrun(config, arrays)
    out(f"speedrun: net {runner.model.count_params():,} parameters, {config.precision}, "
        f"{runner.total_steps} steps of {config.batch_size}; compiled in {runner.compile_seconds:.1f} s "
        "(one time, not counted below)")
    results = []
    for r in range(config.runs):
        result = runner.run(config.seed + r)
        results.append(result)
        out(f"run {r + 1}/{config.runs}: test accuracy {result['test_accuracy']:.4f} "
            f"(TTA {'on' if config.tta else 'off'}), training {result['train_seconds']:.2f} s")
    acc = np.array([r["test_accuracy"] for r in results])
    secs = np.array([r["train_seconds"] for r in results])
    spread = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
    summary = {
        "config": dataclasses.asdict(config), "device": devices[0], "runs": results,
        "test_accuracy_mean": float(acc.mean()), "test_accuracy_std": spread,
        "train_seconds_mean": float(secs.mean()), "train_seconds_std": float(secs.std(ddof=1)) if len(secs) > 1 else 0.0,
        "compile_seconds": runner.compile_seconds, "load_seconds": load_seconds,
        "train_images": len(arrays[0]), "test_images": len(arrays[2]),
    }
    out(f"speedrun {config.data}: test accuracy {100 * acc.mean():.2f}% ± {100 * spread:.2f} "
        f"({len(acc)} runs), training {secs.mean():.2f} s ± {summary['train_seconds_std']:.2f} "
        f"per run on {devices[0]}; compilation {runner.compile_seconds:.1f} s, decode {load_seconds:.1f} s "
        "(one time, excluded)")
    return summary


if __name__ == "__main__":  # pragma: no cover
    speedrun(smoke_config(SpeedrunConfig()), out=lambda s: print(s, file=sys.stderr))
