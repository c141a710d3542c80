"""A CIFAR-10 speed run in the spirit of airbench, with layerkit's own layers and pipeline.

- `config`: `SpeedrunConfig` (every setting, with units), the presets `short` (Muon, races
  airbench94_muon), `short-sgd` (races airbench94) and `long` (races airbench96);
- `net`: the net, its frozen patch-whitening layer and partial identity initialiser;
- `optim`: Nesterov SGD with per-group rates, Muon, lookahead;
- `runner`: device-resident data, compiled steps, test-time augmentation, the report.

    layerkit speedrun cifar10 --runs 10          # a GPU
    layerkit speedrun cifar10 --smoke            # seconds on CPU
"""

from layerkit.speedrun.config import PRESETS, SpeedrunConfig, preset, smoke_config, validate

__all__ = ["PRESETS", "SpeedrunConfig", "Speedrun", "preset", "smoke_config", "speedrun", "validate"]


def __getattr__(name):  # the runner imports Keras and JAX: only when it is used
    if name in ("Speedrun", "speedrun"):
        from layerkit.speedrun import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'layerkit.speedrun' has no attribute {name!r}")
