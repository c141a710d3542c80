"""The training harness: recipes, a run that leaves a record, crash-safe resume.

Its names load on first use (PEP 562), so that importing a light submodule such as
`layerkit.training.stop` does not import Keras and JAX: the CLI installs its signal handlers
that way before anything slow, and a Ctrl-C during start-up is counted.
"""

import importlib

_EXPORTS = {
    "Config": ("layerkit.training.config", "Config"),
    "apply_overrides": ("layerkit.training.config", "apply_overrides"),
    "get_recipe": ("layerkit.training.recipes", "get"),
    "recipe_names": ("layerkit.training.recipes", "names"),
    "RunError": ("layerkit.training.run", "RunError"),
    "train": ("layerkit.training.run", "train"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'layerkit.training' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
