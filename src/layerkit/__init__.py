"""layerkit: build, feed and train convolutional image classifiers with Keras 3."""

from layerkit.backend import select_default_backend

select_default_backend()

from layerkit import blocks  # noqa: E402
from layerkit import models  # noqa: E402

__version__ = "0.1.0"

__all__ = ["blocks", "models", "__version__"]
