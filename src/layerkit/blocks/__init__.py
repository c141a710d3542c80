"""Blocks as Keras layers: each follows the Layer contract and saves in `.keras` files."""

from layerkit.blocks.bottleneck import Bottleneck
from layerkit.blocks.fire import Fire
from layerkit.blocks.residual import Residual
from layerkit.blocks.rev_block import RevBlock
from layerkit.blocks.reversible_stack import ReversibleStack
from layerkit.blocks.shifted_depthwise_conv import ShiftedDepthwiseConv2D
from layerkit.blocks.wide_residual_group import WideResidualGroup

__all__ = [
    "Bottleneck",
    "Fire",
    "Residual",
    "RevBlock",
    "ReversibleStack",
    "ShiftedDepthwiseConv2D",
    "WideResidualGroup",
]
