"""The AlphaGo Zero network (Silver et al. 2017): a residual tower with policy and value heads."""

import keras

from layerkit.blocks import Residual
from layerkit.models._common import image_input
from layerkit.models.registry import register

BOARD = 19
PLANES = 17


@register("alphazero-{blocks}-{filters}", examples=["alphazero-19-256", "alphazero-39-256"])
def alphazero(blocks, filters, input_shape=(BOARD, BOARD, PLANES), momentum=0.99, weight_decay=0.0):
    """AlphaGo Zero: conv stem + B residual blocks of F filters, policy (362) and value (tanh) heads."""
    if blocks < 1 or filters < 1:
        raise ValueError(
            f"alphazero-B-F needs B >= 1 blocks and F >= 1 filters. Received: B={blocks}, F={filters}"
        )
    layers = keras.layers
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None
    board = image_input(input_shape, name="board")
    height, width, _ = input_shape

    # === The tower: a plain Sequential of Residual blocks ===
    tower = keras.Sequential(name="tower")
    tower.add(keras.Input(tuple(input_shape)))
    tower.add(layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="stem"))
    tower.add(layers.BatchNormalization(momentum=momentum, name="stem_bn"))
    tower.add(layers.ReLU(name="stem_relu"))
    for i in range(blocks):
        tower.add(Residual(filters, 3, momentum=momentum, kernel_regularizer=reg, name=f"residual{i}"))
    features = tower(board)

    # === Policy head: one logit per board point, plus pass ===
    p = layers.Conv2D(2, 1, use_bias=False, kernel_regularizer=reg, name="policy_conv")(features)
    p = layers.BatchNormalization(momentum=momentum, name="policy_bn")(p)
    p = layers.ReLU(name="policy_relu")(p)
    p = layers.Flatten(name="policy_flatten")(p)
    policy = layers.Dense(height * width + 1, kernel_regularizer=reg, dtype="float32", name="policy")(p)

    # === Value head: a scalar in [-1, 1] ===
    v = layers.Conv2D(1, 1, use_bias=False, kernel_regularizer=reg, name="value_conv")(features)
    v = layers.BatchNormalization(momentum=momentum, name="value_bn")(v)
    v = layers.ReLU(name="value_relu")(v)
    v = layers.Flatten(name="value_flatten")(v)
    v = layers.Dense(256, activation="relu", kernel_regularizer=reg, name="value_hidden")(v)
    value = layers.Dense(1, activation="tanh", kernel_regularizer=reg, dtype="float32", name="value")(v)

    return keras.Model(board, {"policy": policy, "value": value}, name=f"alphazero-{blocks}-{filters}")
