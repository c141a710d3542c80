"""One tiny training run for test_distribution.py, in its own process.

    python _distributed_worker.py OUT [KEY=VALUE ...]
    python _distributed_worker.py OUT --resume [LAUNCH_KEY=VALUE ...] [epochs=N]   # coordinator=..., process_id=...

A 2-conv model on 16x16 crops of 128 sample images, augmented (random crops and flips), one epoch of 4 steps: seconds, even
when compiled for 4 devices.
"""

import sys

from layerkit import models  # first: it selects the JAX backend before keras loads

import keras  # noqa: E402
from layerkit.training import apply_overrides, get_recipe, train

OVERRIDES = ["model=tiny-dp", "model_options={}", "epochs=1", "train_limit=128", "test_limit=24", "batch_size=32",
             "image_size=16", "report=false", "augment=cifar", "normalize=unit", "tta=none",
             "optimizer=adamw", "optimizer_options={}", "lr=0.003", "weight_decay=0.0005", "schedule=onecycle",
             "warmup_epochs=0.5", "label_smoothing=0.1"]


@models.register("tiny-dp")
def tiny_dp(num_classes=10, input_shape=(16, 16, 3), classifier_activation="softmax"):
    """Two convolutions, BatchNorm (its batch statistics must be those of the global batch)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation=classifier_activation)(x)
    return keras.Model(inputs, outputs, name="tiny_dp")


if __name__ == "__main__":
    import dataclasses

    from layerkit.training.distribution import Launch

    resume = sys.argv[2:3] == ["--resume"]
    fields = {f.name: f.type for f in dataclasses.fields(Launch)}
    launch, overrides = {}, []
    for arg in sys.argv[3 if resume else 2:]:
        key, _, value = arg.partition("=")
        if key in fields:
            launch[key] = fields[key](value)
        else:
            overrides.append(arg)
    launch = Launch(**launch)
    if resume:  # epochs=N: the run shortened or extended to N epochs (train's `epochs`)
        epochs = {k: int(v) for k, _, v in (a.partition("=") for a in overrides) if k == "epochs"}.get("epochs")
        if [a for a in overrides if not a.startswith("epochs=")]:
            raise SystemExit(f"--resume takes launch keys and epochs=N only, not {overrides}")
        print(train(None, sys.argv[1], resume=True, verbose=0, launch=launch, epochs=epochs))
    else:
        config = apply_overrides(get_recipe("sample", smoke_run=True), OVERRIDES + overrides)
        print(train(config, sys.argv[1], verbose=0, launch=launch))
