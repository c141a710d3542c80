"""The model zoo: one registry, one factory.

    >>> import layerkit
    >>> model = layerkit.models.create("wrn-16-4", num_classes=10)
    >>> layerkit.models.names()  # every listed name
"""

from layerkit.models.registry import create, defaults, describe, family, names, patterns, register

# Importing a family's module registers it.
from layerkit.models import resnet, revnet  # noqa: F401,E402
from layerkit.models import airbench, alphazero, baselines, squeezenet, vgg, wide_resnet  # noqa: F401,E402
from layerkit.models import applications  # noqa: F401,E402
from layerkit.models import efficientnet_lite  # noqa: F401,E402

__all__ = ["create", "defaults", "describe", "family", "names", "patterns", "register"]
