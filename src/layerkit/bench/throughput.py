"""Training throughput: images/s fed by layerkit's pipeline against a batch already on the device.

    layerkit bench throughput cifar10                        # wrn-16-4, bf16, batch 512 (a GPU)
    layerkit bench throughput sample --model wrn-10-1 --batch-size 64 --steps 10   # CPU, minutes

One compiled training step (`jax.jit` of Keras's stateless API: the model's own flip and
reflect-crop augmentation, then the zoo model, SGD momentum), timed two ways in the same
process: (a) fed batch after batch by `layerkit.data.Pipeline` from the data set's JPEGs
(decoded once and cached, prefetched by its thread, copied to the device at each step);
(a') the same Pipeline keeping the decoded set on the device (``device=``, what `layerkit
train` does on a GPU or TPU for sets up to 1 GiB): a step sends only its indices; (b) on one
batch already on the device, the ceiling. Whole timed windows end with the device idle
(``block_until_ready``), the three alternating; compilation and warm-up steps are excluded.
The last line is ``ratio pipeline/device-resident: X`` for (a) (1.0 = the pipeline costs
nothing); the line before it gives (a') likewise.
"""

import statistics
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("data", nargs="?", default="cifar10",
                        help="cifar10 (default), sample, or a path (an .npz pack, shards, class folders)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="wrn-16-4", help="a zoo model (default wrn-16-4)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--steps", type=int, default=50, help="training steps per timed window")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per figure (median)")


def _positive(args):
    for key in ("batch_size", "steps", "repeats"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1. Received: {getattr(args, key)}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be >= 0. Received: {args.warmup}")


class TrainStep:
    """A compiled training step of `model_name` (cifar augmentation in the model) on uint8 batches."""

    def __init__(self, model_name, num_classes, image_shape, batch_size, precision="bf16", seed=0):
        import jax
        import keras

        from layerkit import augment, models
        from layerkit.training.run import precision as policy

        with policy(precision):
            keras.utils.set_random_seed(seed)
            net = models.create(model_name, num_classes=num_classes, input_shape=image_shape)
            inputs = keras.Input(image_shape, dtype="uint8", name="pixels")
            x = inputs
            for layer in augment.augmentation("cifar", seed=seed):
                x = layer(x)
            x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(x)
            self.model = keras.Model(inputs, net(x))
        self.optimizer = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
        self.optimizer.build(self.model.trainable_variables)
        self.state = ([v.value for v in self.model.trainable_variables],
                      [v.value for v in self.model.non_trainable_variables],
                      [v.value for v in self.optimizer.variables])
        x = np.zeros((batch_size, *image_shape), np.uint8)
        y = np.zeros(batch_size, np.int32)
        start = time.perf_counter()
        self.step = jax.jit(self._step, donate_argnums=0).lower(self.state, x, y).compile()
        self.compile_seconds = time.perf_counter() - start

    def _step(self, state, images, labels):
        import jax
        import jax.numpy as jnp

        trainable, non_trainable, opt = state

        def loss_fn(tv):
            probs, ntv = self.model.stateless_call(tv, non_trainable, images, training=True)
            logp = jnp.log(jnp.clip(probs.astype(jnp.float32), 1e-7, 1.0))
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1)), ntv

        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        trainable, opt = self.optimizer.stateless_apply(opt, grads, trainable)
        return (trainable, non_trainable, opt), loss

    def __call__(self, images, labels):
        self.state, loss = self.step(self.state, images, labels)
        return loss

    def wait(self):
        import jax

        jax.block_until_ready(self.state)


def measure(step, batches, steps, warmup, repeats, batch_size) -> list:
    """images/s of `repeats` windows of `steps` steps, each after `warmup` untimed steps."""
    rates = []
    for _ in range(repeats):
        for _ in range(warmup):
            step(*next(batches))
        step.wait()
        start = time.perf_counter()
        for _ in range(steps):
            step(*next(batches))
        step.wait()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return rates


def run(args) -> int:
    import jax

    from layerkit.data.pipeline import Pipeline
    from layerkit.data.sources import open_dataset

    _positive(args)
    source = open_dataset(args.data, "train", args.data_dir)
    pipe = Pipeline(source, args.batch_size, shuffle=True, seed=0, cache_decoded=True)
    device = jax.local_devices()[0]
    print(f"throughput: {args.model}, {args.precision}, batch {args.batch_size}, "
          f"{len(pipe.labels)} images of {args.data} ({len(pipe)} batches an epoch), on {device}")
    start = time.perf_counter()
    pipe.read(np.arange(1))  # fills the decoded cache: one-time, not timed
    print(f"  decoded the data set once in {time.perf_counter() - start:.1f} s (cached, not timed)")
    step = TrainStep(args.model, len(source.classes), tuple(pipe.image_shape), args.batch_size,
                     args.precision)
    print(f"  model {step.model.count_params():,} parameters; step compiled in "
          f"{step.compile_seconds:.1f} s (not timed)")

    def pipeline_batches():
        while True:
            yield from pipe

    kept = Pipeline(source, args.batch_size, shuffle=True, seed=0, cache_decoded=True, device=device)
    kept.batch_at(0)  # decodes and puts the set on the device: one-time, not timed

    def kept_batches():
        while True:
            yield from kept

    x, y = pipe.batch_at(0)
    resident = (jax.device_put(x, device), jax.device_put(y, device))

    def resident_batches():
        while True:
            yield resident

    windows = {"fed": [], "kept": [], "ceiling": []}
    sources = {"fed": pipeline_batches(), "kept": kept_batches(), "ceiling": resident_batches()}
    for _ in range(args.repeats):  # alternate the windows: a busy machine drifts all alike
        for name, batches in sources.items():
            windows[name] += measure(step, batches, args.steps, args.warmup, 1, args.batch_size)
    pipe.close()
    kept.close()
    rate = {name: statistics.median(r) for name, r in windows.items()}
    labels = {"fed": "(a) fed by layerkit's Pipeline:", "kept": "(a') Pipeline, data on the device:",
              "ceiling": "(b) batch already on the device:"}
    for name, label in labels.items():
        print(f"{label:<36} {rate[name]:12,.1f} images/s  (median of {args.repeats}: "
              f"{', '.join(f'{r:,.0f}' for r in windows[name])})")
    print(f"ratio pipeline-on-device/device-resident: {rate['kept'] / rate['ceiling']:.3f}")
    print(f"ratio pipeline/device-resident: {rate['fed'] / rate['ceiling']:.3f}")
    return 0
