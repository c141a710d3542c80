"""How long one checkpoint write takes for each recipe's model: the `.keras` file (weights,
optimizer slots, config) written the way a run's checkpoints are (`_atomic.atomic_save`), median
of `--repeats` writes, with the parameter count and the file's size.

    .venv/bin/python bench/checkpoint_write.py [--repeats 3] [--recipes sample transfer ...]

Each model is built and compiled as training builds it (`run.build_model`, `compile_model`,
optimizer slots made), from the recipe's ``--smoke`` config and random pixels: the same layers
as the full recipe (pretrained weights are not loaded: no download), at the smoke image size,
which does not change the parameter count of these convnets. A step checkpoint
(``checkpoint_every=``, a SIGTERM) and an epoch checkpoint write the same file; the run also
waits for the steps in flight (bench/step_checkpoints.py measures the whole cost in training).
The machine's load average comes first: time only a quiet machine.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")


class _Pixels:
    """What `build_model` reads of a training pipeline: labels and images (0..255)."""

    def __init__(self, shape, classes=10, images=40):
        import numpy as np

        self.labels = np.arange(images) % classes
        self.images = np.random.default_rng(0).integers(0, 256, (images, *shape), dtype=np.uint8)

    def read(self, idx):
        return self.images[idx]


def main(argv=None) -> int:
    import keras

    from layerkit._atomic import atomic_save
    from layerkit.training import recipes
    from layerkit.training.data import RunData
    from layerkit.training.run import build_model, compile_model, precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipes", nargs="+", default=list(recipes.names()))
    args = parser.parse_args(argv)
    print(f"checkpoint write per recipe model, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, "
          f"median of {args.repeats}")
    print(f"{'recipe':22s} {'model':20s} {'parameters':>11s} {'file MB':>8s} {'write s':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes:
            config = recipes.get(name, smoke_run=True)
            shape = (config.image_size or 32, config.image_size or 32, 3)
            pixels = _Pixels(shape)
            data = RunData(pixels, pixels, pixels, tuple(f"c{i}" for i in range(10)), shape, "validation", {})
            keras.utils.clear_session()
            with precision(config.precision):
                model = build_model(config, data, steps_per_epoch=4)
                compile_model(model, config, steps_per_epoch=4)
                model.optimizer.build(model.trainable_variables)
            path = Path(tmp) / f"{name}.keras"
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                atomic_save(path, model.save, ".keras")
                seconds.append(time.perf_counter() - start)
            print(f"{name:22s} {model.name[:20]:20s} {model.count_params():>11,d} {path.stat().st_size / 1e6:>8.1f} "
                  f"{statistics.median(seconds):>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
