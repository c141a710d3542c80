"""Blocks as Keras layers: each follows the Layer contract and saves in `.keras` files."""

from layerkit.blocks.fire import Fire
from layerkit.blocks.residual import Residual
from layerkit.blocks.wide_residual_group import WideResidualGroup

__all__ = ["Fire", "Residual", "WideResidualGroup"]
