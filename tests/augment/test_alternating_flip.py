"""AlternatingFlip: each image mirrored on alternate epochs, a random half first; jit-compiled."""

import jax
import keras
import numpy as np
import pytest

from layerkit.augment import AlternatingFlip
from tests.augment.checks import check_augmentation, images


def test_layer_contract(tmp_path):
    check_augmentation(lambda: AlternatingFlip(2, seed=3), tmp_path, x=images(n=16))


def test_each_image_flips_every_epoch_after_a_random_half_first():
    x = images(n=200, size=8, seed=1)
    layer = AlternatingFlip(steps_per_epoch=2, seed=0)
    seen = [np.asarray(layer(x, training=True)) for _ in range(6)]  # 3 epochs of 2 steps
    mirrored = [np.all(s == x[:, :, ::-1], axis=(1, 2, 3)) for s in seen]
    assert 70 < mirrored[0].sum() < 130  # about half in epoch 0
    np.testing.assert_array_equal(mirrored[1], mirrored[0])  # same epoch, same flips
    np.testing.assert_array_equal(mirrored[2], ~mirrored[0])  # epoch 1: the other way
    np.testing.assert_array_equal(mirrored[4], mirrored[0])  # epoch 2: as epoch 0
    assert int(layer.step.numpy()) == 6
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)  # inference: the image
    assert int(layer.step.numpy()) == 6  # and no step counted
    other = AlternatingFlip(steps_per_epoch=2, seed=1)
    other.build(x.shape)
    assert not np.array_equal(np.asarray(other.first_epoch_flips(x)), np.asarray(layer.first_epoch_flips(x)))


def test_runs_inside_jit_with_the_counter_as_state():
    x = images(n=8, size=8, seed=2)
    layer = AlternatingFlip(steps_per_epoch=1, seed=0)
    layer.build(x.shape)

    @jax.jit
    def step(state, batch):
        out, state = layer.stateless_call([], state, batch, training=True)
        return out, state

    state = [v.value for v in layer.non_trainable_variables]
    first, state = step(state, x)
    second, state = step(state, x)
    np.testing.assert_array_equal(np.asarray(second), np.asarray(first)[:, :, ::-1])
    assert int(state[0]) == 2


def test_bad_steps_are_refused():
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer. Received: steps_per_epoch=0"):
        AlternatingFlip(0)
