"""Training throughput of the engine: `layerkit train` itself against a bare jitted step.

    layerkit bench throughput --model wrn-10-1 --batch-size 64 --steps 20      # CPU, minutes
    layerkit bench throughput --recipe wrn-40-2-cifar10 --data cifar10 --model wrn-16-4 \\
        --batch-size 512 --precision bf16 --steps 100                          # a GPU

Two ways to train the same model on the same batches, alternating `--repeats` times:

(H) the harness: `layerkit.train` on the recipe with everything a run does (its Pipeline,
    Keras `fit`, the callbacks, CSV, TensorBoard, a checkpoint every epoch), validation off
    so both sides do the same work; its images/s per epoch from the run's history.csv, the
    first epoch (compilation) left out;
(B) a bare step: the model, optimizer and loss built by the same functions the run uses
    (`build_model`, `compile_model`), one `jax.jit` of Keras's stateless API in a plain
    Python loop, fed the same Pipeline's batches: the ceiling for the harness.

The last line is ``harness/bare-step: X`` (1.0 = the harness costs nothing).
"""

import csv
import statistics
import tempfile
import time
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("--recipe", default="sample", help="the recipe to train (default: sample)")
    parser.add_argument("--data", default=None, help="overrides the recipe's data set")
    parser.add_argument("--model", default=None, help="overrides the recipe's model (e.g. wrn-10-1)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None)
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch (a timed window)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per harness run (one more compiles)")
    parser.add_argument("--repeats", type=int, default=3, help="harness runs and bare windows, alternating")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2,
                        help="the harness's progress display: 2 a line per epoch (default, as in logs), "
                             "1 a live progress bar, 0 none")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def _positive(args):
    for key in ("steps", "epochs", "repeats"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key} must be >= 1. Received: {getattr(args, key)}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")


def bench_config(args):
    from layerkit.training import apply_overrides, get_recipe

    config = get_recipe(args.recipe)
    flags = {"data": args.data, "model": args.model, "batch_size": args.batch_size, "precision": args.precision}
    config = apply_overrides(config, {k: v for k, v in flags.items() if v is not None})
    config = apply_overrides(config, list(args.overrides))
    if config.batch_size == 0 or config.model == "auto" or config.image_size == 0:
        from layerkit.training.data import load_data

        data = load_data(config)  # the batch, model and image size a run fits to this data
        config = data.config
        data.train.close()
    # an epoch is one whole pass of `steps` batches: train_limit, not steps_per_epoch (a shorter
    # epoch would run out of data at the end of a pass, and Keras would stop the fit there)
    return apply_overrides(config, {"validation": 0.0, "train_limit": args.steps * config.batch_size,
                                    "steps_per_epoch": 0, "epochs": args.epochs + 1,
                                    "test_limit": config.batch_size, "report": False, "tta": "none"})


class BareStep:
    """One compiled training step of `model` (compiled by `compile_model`): its loss plus the
    layers' losses, its optimizer, BatchNorm statistics carried; nothing else."""

    def __init__(self, model):
        import jax

        self.model = model
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        copy = lambda variables: [jax.numpy.array(v.value, copy=True) for v in variables]  # noqa: E731
        # copies: the step donates its state, and the model's own variables stay usable
        self.state = (copy(model.trainable_variables), copy(model.non_trainable_variables),
                      copy(optimizer.variables))
        loss = model.loss

        def step(state, images, labels):
            trainable, non_trainable, opt = state

            def loss_fn(tv):
                out, ntv, losses = model.stateless_call(tv, non_trainable, images, training=True,
                                                        return_losses=True)
                return loss(labels, out) + sum(losses), ntv

            (value, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
            trainable, opt = optimizer.stateless_apply(opt, grads, trainable)
            return (trainable, non_trainable, opt), value

        self._step = jax.jit(step, donate_argnums=0)

    def __call__(self, images, labels):
        self.state, loss = self._step(self.state, images, labels)
        return loss

    def wait(self):
        import jax

        jax.block_until_ready(self.state)


def harness_rates(config, workdir: Path, verbose: int) -> list:
    """images/s of each epoch after the first, as the run's own history.csv records them."""
    from layerkit.training import train

    train(config, workdir, verbose=verbose)
    with open(workdir / "history.csv", newline="") as f:
        return [float(r["images_per_sec"]) for r in csv.DictReader(f)][1:]


def forever(pipe):
    """The pipeline's batches, epoch after epoch (its prefetching thread working ahead)."""
    while True:
        yield from pipe


def bare_rates(step, batches, epochs: int, steps: int, batch: int) -> list:
    """images/s of `epochs` windows of `steps` steps, each window ending with the device idle."""
    rates = []
    for _ in range(epochs):
        step.wait()
        start = time.perf_counter()
        for _ in range(steps):
            step(*next(batches))
        step.wait()
        rates.append(steps * batch / (time.perf_counter() - start))
    return rates


def run(args) -> int:
    import keras

    from layerkit.training.data import load_data
    from layerkit.training.run import build_model, compile_model, precision

    _positive(args)
    config = bench_config(args)
    print(f"throughput: {config.model} ({args.recipe} recipe), {config.precision}, batch {config.batch_size}, "
          f"{args.steps} steps an epoch, {args.epochs} timed epochs x {args.repeats}, on {config.data}")
    with precision(config.precision):
        keras.utils.set_random_seed(config.seed)
        data = load_data(config)
        model = build_model(config, data, args.steps)
        compile_model(model, config, args.steps)
        start = time.perf_counter()
        step = BareStep(model)
        batches = forever(data.train)
        step(*next(batches))
        step.wait()
        print(f"  model {model.count_params():,} parameters; bare step compiled in "
              f"{time.perf_counter() - start:.1f} s (not timed)")
        windows = {"harness": [], "bare": []}
        with tempfile.TemporaryDirectory(prefix="layerkit-bench-") as tmp:
            for r in range(args.repeats):  # alternate: a busy machine drifts both alike
                windows["harness"] += harness_rates(config, Path(tmp) / f"run{r}", args.verbose)
                windows["bare"] += bare_rates(step, batches, args.epochs, args.steps, config.batch_size)
        data.train.close()
    rate = {name: statistics.median(r) for name, r in windows.items()}
    labels = {"harness": "(H) layerkit train (the whole harness):", "bare": "(B) bare jitted step, same batches:"}
    for name, label in labels.items():
        print(f"{label:<42} {rate[name]:12,.1f} images/s  (median of {len(windows[name])}: "
              f"{', '.join(f'{v:,.0f}' for v in windows[name])})")
    print(f"harness/bare-step: {rate['harness'] / rate['bare']:.3f}")
    return 0
