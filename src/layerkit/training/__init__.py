"""The training harness: recipes, a run that leaves a record, crash-safe resume."""

from layerkit.training.config import Config, apply_overrides
from layerkit.training.recipes import get as get_recipe
from layerkit.training.recipes import names as recipe_names
from layerkit.training.run import RunError, train

__all__ = ["Config", "RunError", "apply_overrides", "get_recipe", "recipe_names", "train"]
