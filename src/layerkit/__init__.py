"""layerkit: build, feed and train convolutional image classifiers with Keras 3.

`import layerkit` is light (it does not import Keras): it sets the backend, and registers
every serializable layerkit class with Keras as soon as Keras is imported (at once if it
already is), so a plain ``keras.saving.load_model`` finds them. The subpackages and
`load_model` are imported on first use.
"""

from layerkit.backend import select_default_backend

select_default_backend()

__version__ = "0.1.0"

__all__ = ["augment", "blocks", "load_model", "models", "train", "training", "__version__"]

_SUBPACKAGES = ("augment", "blocks", "data", "models", "training")


def __getattr__(name):
    # Keras, JAX, matplotlib and the data stack are imported on first use.
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"layerkit.{name}")
    if name == "train":
        from layerkit.training import train

        return train
    if name == "load_model":
        from layerkit.saving import load_model

        return load_model
    raise AttributeError(f"module 'layerkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBPACKAGES))


from layerkit import _registration  # noqa: E402

_registration.install()
