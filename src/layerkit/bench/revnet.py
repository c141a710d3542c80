"""RevNet vs ResNet: compiled training-step memory and step time, side by side.

    layerkit bench revnet --batch-size 64          # or: python bench/revnet.py

For RevNet-38/110/164 (reversible backward, and the same networks with
``reversible=False``) and the ResNet-32/110/164 baselines, one SGD training step is
jit-compiled at one batch size. Memory is XLA's compiled temporary memory of the step
(`memory_analysis().temp_size_in_bytes`) on CPU, and the allocator's peak on a GPU;
time is the fastest of `--steps` steps after a warm-up step, the two variants of a
RevNet timed in turn (reversible, plain, reversible, ...) so that other load hits both
alike. (On a GPU the peak is the process's peak so far: pass one model per run with
``--models`` for a clean figure.) The last line is::

    memory revnet-110/revnet-38: A  resnet-164/revnet-164: B  time revnet/plain: C

A: two RevNets of nearly the same widths, 3 vs 9 units per stage (flat in depth: ~1).
B: ResNet-164 over RevNet-164, a plain and a reversible network of the same shape.
C: step time of the RevNets with their custom backward over the same networks with
plain backprop, the geometric mean over RevNet-38/110/164.
"""

import statistics
import time

REVNETS = ("revnet-38", "revnet-110", "revnet-164")
RESNETS = ("resnet-32", "resnet-110", "resnet-164")


def add_arguments(parser):
    # Temporary memory also holds gradients and optimizer temporaries, ~2x the weights
    # (RevNet-110: 14 MiB at batch 1); activations must dominate for A to show depth.
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step")
    parser.add_argument("--image-size", type=int, default=32, help="square input side")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--models", nargs="+", default=None,
                        help="subset of the models (default: all six)")
    parser.add_argument("--no-time", action="store_true", help="memory only")


def _train_step(model):
    """A pure SGD training step of `model` and its initial state."""
    import jax
    import keras

    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def loss(tv, ntv, x, y):
        pred, ntv = model.stateless_call(tv, ntv, x, training=True)
        return loss_fn(y, pred), ntv

    def step(tv, ntv, ov, x, y):
        (value, ntv), grads = jax.value_and_grad(loss, has_aux=True)(tv, ntv, x, y)
        tv, ov = optimizer.stateless_apply(ov, grads, tv)
        return value, tv, ntv, ov

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    return step, state


def compile_step(name, batch_size, image_size=32, **overrides):
    """(compiled step, its state, a batch, figures) for one training step of model `name`."""
    import jax
    import numpy as np

    import layerkit.models

    model = layerkit.models.create(name, input_shape=(image_size, image_size, 3), **overrides)
    step, state = _train_step(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch_size,))
    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*state, x, y).compile()
    figures = {"params": model.count_params(),
               "temp_mib": compiled.memory_analysis().temp_size_in_bytes / 2**20}
    return compiled, list(state), (x, y), figures


def time_steps(entries, steps):
    """Time `steps` steps of each entry, interleaved (a, b, a, b, ...) so that load from
    other processes hits all alike; a step's time is the minimum over its runs."""
    import jax

    for compiled, state, batch, _ in entries:  # warm-up: transfers, first-run costs
        _, *state[:] = compiled(*state, *batch)
        jax.block_until_ready(state)
    times = [[] for _ in entries]
    for _ in range(steps):
        for i, (compiled, state, batch, _) in enumerate(entries):
            start = time.perf_counter()
            _, *state[:] = compiled(*state, *batch)
            jax.block_until_ready(state)
            times[i].append(time.perf_counter() - start)
    device = jax.devices()[0]
    for (_, _, _, figures), t in zip(entries, times):
        figures["step_ms"] = 1000 * min(t)
        if device.platform == "gpu":
            figures["peak_mib"] = device.memory_stats()["peak_bytes_in_use"] / 2**20


def run(args):
    import jax

    chosen = args.models or [*REVNETS, *RESNETS]
    runs = []
    for name in chosen:
        variants = [(name, {})]
        if name.startswith("revnet"):
            variants.append((name + " (plain)", {"reversible": False}))
        entries = [compile_step(name, args.batch_size, args.image_size, **overrides)
                   for _, overrides in variants]
        if not args.no_time:
            time_steps(entries, args.steps)
        for (label, _), (*_, r) in zip(variants, entries):
            runs.append((label, r))
            cells = [f"{label:20s}", f"params {r['params'] / 1e6:5.2f}M",
                     f"temp {r['temp_mib']:8.1f} MiB"]
            if "peak_mib" in r:
                cells.append(f"peak {r['peak_mib']:8.1f} MiB")
            if "step_ms" in r:
                cells.append(f"step {r['step_ms']:8.1f} ms")
            print("  ".join(cells), flush=True)
        del entries
    by = dict(runs)
    key = "peak_mib" if "peak_mib" in by.get("revnet-38", {}) else "temp_mib"
    print(f"device: {jax.devices()[0].device_kind}, batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}, memory = {key}")

    def ratio(a, b, field=key):
        if a in by and b in by and field in by[a] and field in by[b]:
            return f"{by[a][field] / by[b][field]:.2f}"
        return "n/a"

    time_ratios = [by[n]["step_ms"] / by[n + " (plain)"]["step_ms"]
                   for n in REVNETS if n in by and "step_ms" in by[n]]
    c = statistics.geometric_mean(time_ratios) if time_ratios else None
    print(f"memory revnet-110/revnet-38: {ratio('revnet-110', 'revnet-38')}  "
          f"resnet-164/revnet-164: {ratio('resnet-164', 'revnet-164')}  "
          f"time revnet/plain: {'n/a' if c is None else f'{c:.2f}'}")
    return 0
