"""layerkit: build, feed and train convolutional image classifiers with Keras 3."""

from layerkit.backend import select_default_backend

select_default_backend()

from layerkit import blocks  # noqa: E402
from layerkit import models  # noqa: E402

__version__ = "0.1.0"

__all__ = ["blocks", "models", "train", "__version__"]


def __getattr__(name):
    # The harness pulls in matplotlib and the data stack: import it on first use.
    if name == "train":
        from layerkit.training import train

        return train
    if name == "training":
        import layerkit.training

        return layerkit.training
    raise AttributeError(f"module 'layerkit' has no attribute {name!r}")
