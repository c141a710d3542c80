"""Compile once, train several times: the speed run's loop, evaluation and report.

Everything a run touches lives on the device: the uint8 images, the labels, the data order of
every step and every image's flip of every epoch. A step receives nothing from the host; it
gathers its batch, flips it, and the net translates (and cuts out) on the device. Steps,
whitening and evaluation are compiled ahead of time (``jax.jit(...).lower(...).compile()``), so
a run's seconds exclude compilation, which is reported apart. As airbench counts it, a run's
time is the whitening set-up, the training steps and the final test-time-augmented evaluation.
"""

import dataclasses
import math
import time

import numpy as np

from layerkit.speedrun import optim
from layerkit.speedrun.config import SpeedrunConfig, validate
from layerkit.speedrun.net import CIFAR_MEAN, CIFAR_STD, build_net, whitening_kernel

EVAL_BATCH = 2000


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


def flip_plan(n_images: int, epochs: int, mode: str, rng) -> np.ndarray:
    """(epochs, n_images) uint8: whether each image is mirrored in each epoch.

    "alternate": a random half in epoch 0, then every image flips every other epoch, so each
    image is seen both ways in any two consecutive epochs; "random": independent coin flips.
    """
    if mode == "none":
        return np.zeros((epochs, n_images), np.uint8)
    if mode == "random":
        return rng.integers(0, 2, (epochs, n_images), dtype=np.uint8)
    first = rng.integers(0, 2, n_images, dtype=np.uint8)
    return np.stack([first ^ (e % 2) for e in range(epochs)]).astype(np.uint8)


def tta_views(images, level: int):
    """[(weight, images)] summing to 1. Level 0: the image; 1: the image and its mirror, 1/2
    each; 2 (airbench's): those two at 1/4 each, and the 1-pixel reflect translations up-left
    and down-right of each at 1/8 (six views)."""
    import jax.numpy as jnp

    mirror = images[:, :, ::-1]
    if level == 0:
        return [(1.0, images)]
    if level == 1:
        return [(0.5, images), (0.5, mirror)]
    h, w = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [padded[:, :h, :w], padded[:, 2:h + 2, 2:w + 2]]
    return [(0.25, images), (0.25, mirror)] + [(0.125, v) for s in shifted for v in (s, s[:, :, ::-1])]


class Speedrun:
    """Compiled steps for one `SpeedrunConfig`; `run(seed)` trains once from new weights."""

    def __init__(self, config: SpeedrunConfig, arrays):
        import jax

        self.config = config = validate(config)
        train_x, train_y, test_x, test_y = arrays
        self.n_train, self.n_test = len(train_x), len(test_x)
        self.eval_batch = min(self.n_test, EVAL_BATCH)
        pad = -self.n_test % self.eval_batch  # whole evaluation batches; label -1 never counts
        test_x = np.concatenate([test_x, np.zeros((pad, *test_x.shape[1:]), test_x.dtype)])
        test_y = np.concatenate([test_y, np.full(pad, -1, test_y.dtype)])
        self.data = tuple(jax.device_put(a) for a in (train_x, train_y, test_x, test_y))
        self.steps_per_epoch = self.n_train // config.batch_size
        self.total_steps = max(1, int(math.ceil(config.epochs * self.steps_per_epoch)))
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.whiten_steps = int(math.ceil(config.whiten_bias_epochs * self.steps_per_epoch))
        self.model = self._build(config.seed)
        paths = [v.path for v in self.model.trainable_variables]
        self.groups = optim.make_groups(config, paths)
        non_trainable = self.model.non_trainable_variables
        self.whiten_index = [v.path for v in non_trainable].index("whiten/kernel")
        # Lookahead averages the weights and the BatchNorm statistics (not the frozen whitening
        # or the random generators' state).
        self.averaged = [i for i, v in enumerate(non_trainable)
                         if "float" in str(v.dtype) and i != self.whiten_index]
        self.compile_seconds = self._compile()

    # --- state ---

    def _build(self, seed: int):
        import keras

        from layerkit.training.run import precision

        with precision(self.config.precision):
            keras.utils.set_random_seed(seed)
            return build_net(self.config)

    def initial_state(self, seed: int):
        """(trainable, non-trainable, momentum buffers, lookahead EMA, step) for new weights."""
        import jax.numpy as jnp

        fresh = self._build(seed)
        trainable = [v.value for v in fresh.trainable_variables]
        non_trainable = [v.value for v in fresh.non_trainable_variables]
        buffers = [jnp.zeros(v.shape, jnp.float32) for v in trainable]
        ema = self._averaged(trainable, non_trainable) if self.config.lookahead else []
        return (trainable, non_trainable, buffers, ema, jnp.int32(0))

    def _averaged(self, trainable, non_trainable):
        import jax.numpy as jnp

        # copies: the step donates its state, and one buffer cannot be donated twice
        return [jnp.array(w, jnp.float32, copy=True) for w in list(trainable) + [non_trainable[i] for i in self.averaged]]

    def _plan(self, seed: int):
        """For the run `seed`: the data order of every step, the flips of every epoch, and the
        training images whose patches set the whitening (a random sample: data sets often
        come sorted by class, and CIFAR-10's first 5,000 JPEGs here are all airplanes)."""
        import jax

        rng = np.random.default_rng([seed, 11])
        b, steps = self.config.batch_size, self.steps_per_epoch
        orders = np.concatenate([rng.permutation(self.n_train)[: steps * b].reshape(steps, b)
                                 for _ in range(self.epochs)])[: self.total_steps].astype(np.int32)
        flips = flip_plan(self.n_train, self.epochs, self.config.flip, rng)
        sample = np.sort(rng.permutation(self.n_train)[: min(self.config.whiten_samples, self.n_train)])
        return jax.device_put(orders), jax.device_put(flips), jax.device_put(sample.astype(np.int32))

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

    def _train_step(self, state, train_x, train_y, orders, flips):
        import jax
        import jax.numpy as jnp

        config = self.config
        trainable, non_trainable, buffers, ema, step = state
        idx = orders[step]
        images, labels = train_x[idx], train_y[idx]  # the batch, gathered on the device
        flip = flips[step // self.steps_per_epoch, idx].astype(bool)
        images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
        (loss, non_trainable), grads = jax.value_and_grad(self._loss, has_aux=True)(
            trainable, non_trainable, images, labels)
        main = optim.lr_multiplier(step, self.total_steps, config)
        multipliers = {"main": main, "whiten": optim.whiten_multiplier(step, self.whiten_steps, main, config)}
        muon_dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32
        trainable, buffers = optim.apply(self.groups, trainable, grads, buffers, multipliers,
                                         config.batch_size, config.muon_steps, muon_dtype)
        step = step + 1
        if config.lookahead:
            non_trainable = list(non_trainable)
            averaged = list(trainable) + [non_trainable[i] for i in self.averaged]
            averaged, ema = optim.lookahead(averaged, ema, step, self.total_steps)
            trainable = averaged[: len(trainable)]
            for i, value in zip(self.averaged, averaged[len(trainable):]):
                non_trainable[i] = value
        return (trainable, non_trainable, buffers, ema, step), loss

    def _whiten(self, state, train_x, sample):
        import jax.numpy as jnp

        images = (train_x[sample].astype(jnp.float32) - jnp.asarray(CIFAR_MEAN)) / jnp.asarray(CIFAR_STD)
        kernel = whitening_kernel(images, self.config.whiten_kernel, self.config.whiten_eps)
        trainable, non_trainable, buffers, ema, step = state
        non_trainable = list(non_trainable)
        non_trainable[self.whiten_index] = kernel.astype(non_trainable[self.whiten_index].dtype)
        return (trainable, non_trainable, buffers, ema, step)

    def _finish(self, state):
        """Lookahead ends on its average: the weights and statistics become the EMA."""
        trainable, non_trainable, buffers, ema, step = state
        if not self.config.lookahead:
            return state
        trainable = [e.astype(w.dtype) for w, e in zip(trainable, ema)]
        non_trainable = list(non_trainable)
        for i, e in zip(self.averaged, ema[len(trainable):]):
            non_trainable[i] = e.astype(non_trainable[i].dtype)
        return (trainable, non_trainable, buffers, ema, step)

    def _logits(self, trainable, non_trainable, images):
        import jax.numpy as jnp

        total = 0.0
        for weight, view in tta_views(images, self.config.tta_level):
            logits, _ = self.model.stateless_call(trainable, non_trainable, view, training=False)
            total = total + weight * logits.astype(jnp.float32)
        return total

    def _correct(self, state, test_x, test_y):
        """How many test images the TTA logits get right (one compiled loop over the batches)."""
        import jax
        import jax.numpy as jnp

        trainable, non_trainable = state[0], state[1]

        def batch(i, correct):
            start = i * self.eval_batch
            images = jax.lax.dynamic_slice_in_dim(test_x, start, self.eval_batch)
            labels = jax.lax.dynamic_slice_in_dim(test_y, start, self.eval_batch)
            hits = jnp.argmax(self._logits(trainable, non_trainable, images), -1) == labels
            return correct + jnp.sum(hits)

        return jax.lax.fori_loop(0, len(test_x) // self.eval_batch, batch, jnp.int32(0))

    def _compile(self) -> float:
        import jax

        state = self.initial_state(self.config.seed)
        orders, flips, sample = self._plan(self.config.seed)
        train_x, train_y, test_x, test_y = self.data
        start = time.perf_counter()
        # The data sets are arguments, not closed-over constants: never baked into the program.
        self.whiten_step = jax.jit(self._whiten, donate_argnums=0).lower(state, train_x, sample).compile()
        self.train_step = jax.jit(self._train_step, donate_argnums=0).lower(
            state, train_x, train_y, orders, flips).compile()
        self.finish_step = jax.jit(self._finish, donate_argnums=0).lower(state).compile()
        self.correct_step = jax.jit(self._correct).lower(state, test_x, test_y).compile()
        return time.perf_counter() - start

    # --- one run ---

    def run(self, seed: int) -> dict:
        """Train from new weights (seed `seed`); the test accuracy and the seconds it took."""
        import jax

        state = self.initial_state(seed)
        orders, flips, sample = self._plan(seed)
        train_x, train_y, test_x, test_y = self.data
        jax.block_until_ready((state, orders, flips, sample))
        start = time.perf_counter()
        state = self.whiten_step(state, train_x, sample)
        loss = None
        for _ in range(self.total_steps):
            state, loss = self.train_step(state, train_x, train_y, orders, flips)
        state = self.finish_step(state)
        jax.block_until_ready(state)
        trained = time.perf_counter()
        correct = int(self.correct_step(state, test_x, test_y))
        end = time.perf_counter()
        return {"seed": seed, "seconds": end - start, "train_seconds": trained - start,
                "eval_seconds": end - trained, "final_loss": float(loss), "test_accuracy": correct / self.n_test}


def speedrun(config: SpeedrunConfig, out=print) -> dict:
    """Compile once, train `config.runs` times; mean and spread of the test accuracy and of the
    seconds (whitening + training + TTA evaluation; compilation and decoding stated apart)."""
    import jax

    config = validate(config)
    start = time.perf_counter()
    arrays = load_arrays(config)
    load_seconds = time.perf_counter() - start
    device = str(jax.local_devices()[0])
    out(f"speedrun: {len(arrays[0])} train / {len(arrays[2])} test images of {config.data} decoded "
        f"in {load_seconds:.1f} s, kept on {device}")
    runner = Speedrun(config, arrays)
    out(f"speedrun: net {runner.model.count_params():,} parameters, {config.precision}, {config.optimizer}, "
        f"{runner.total_steps} steps of {config.batch_size}; compiled in {runner.compile_seconds:.1f} s "
        "(one time, not counted below)")
    results = []
    for r in range(config.runs):
        result = runner.run(config.seed + r)
        results.append(result)
        out(f"run {r + 1}/{config.runs}: test accuracy {result['test_accuracy']:.4f} (TTA level "
            f"{config.tta_level}), {result['seconds']:.2f} s ({result['train_seconds']:.2f} s training)")
    acc = np.array([r["test_accuracy"] for r in results])
    secs = np.array([r["seconds"] for r in results])

    def spread(a):
        return float(a.std(ddof=1)) if len(a) > 1 else 0.0

    summary = {
        "config": dataclasses.asdict(config), "device": device, "runs": results,
        "test_accuracy_mean": float(acc.mean()), "test_accuracy_std": spread(acc),
        "seconds_mean": float(secs.mean()), "seconds_std": spread(secs),
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in results])),
        "compile_seconds": runner.compile_seconds, "load_seconds": load_seconds,
        "train_images": len(arrays[0]), "test_images": len(arrays[2]), "steps": runner.total_steps,
        "parameters": runner.model.count_params(),
    }
    out(f"speedrun {config.data}: test accuracy {100 * acc.mean():.2f}% ± {100 * spread(acc):.2f} "
        f"({len(acc)} runs), {secs.mean():.2f} s ± {spread(secs):.2f} per run on {device}; "
        f"compilation {runner.compile_seconds:.1f} s, decode {load_seconds:.1f} s (one time, excluded)")
    return summary
