"""The speed run's loop: flips per epoch, TTA views, whitening set-up, lookahead, frozen bias."""

import numpy as np
import pytest

from layerkit.speedrun import PRESETS, smoke_config, validate
from layerkit.speedrun.runner import Speedrun, flip_plan, load_arrays, tta_views


def test_alternating_flips_show_each_image_both_ways_in_two_epochs():
    plan = flip_plan(1000, 4, "alternate", np.random.default_rng(0))
    assert plan.shape == (4, 1000) and plan.dtype == np.uint8
    np.testing.assert_array_equal(plan[1], 1 - plan[0])
    np.testing.assert_array_equal(plan[2], plan[0])
    assert 400 < plan[0].sum() < 600
    assert not flip_plan(10, 2, "none", np.random.default_rng(0)).any()


def test_tta_views_weigh_to_one_and_shift_with_reflection():
    images = np.random.default_rng(0).integers(0, 256, (2, 6, 6, 3)).astype("uint8")
    for level, count in ((0, 1), (1, 2), (2, 6)):
        views = tta_views(images, level)
        assert len(views) == count and sum(w for w, _ in views) == pytest.approx(1.0)
    views = tta_views(images, 2)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(np.asarray(views[1][1]), images[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(views[2][1]), padded[:, :6, :6])
    np.testing.assert_array_equal(np.asarray(views[4][1]), padded[:, 2:8, 2:8])


@pytest.fixture(scope="module")
def sgd_runner():
    """The short-sgd preset (lookahead, whitening bias at the main schedule) on 512 sample images:
    4 steps an epoch, 2 epochs, the whitening bias learning for the first 2 steps."""
    config = smoke_config(PRESETS["short-sgd"]).replace(epochs=2.0, whiten_bias_epochs=0.5, runs=1,
                                                        precision="fp32", tta_level=1)
    return Speedrun(config, load_arrays(config))


def test_whitening_is_set_from_data_then_its_bias_freezes(sgd_runner):
    r = sgd_runner
    train_x = r.data[0]
    orders, flips, sample = r._plan(3)
    assert len(np.unique(np.asarray(sample))) == 256 == r.config.whiten_samples
    assert len(np.unique(np.asarray(r.data[1])[np.asarray(sample)])) == 10  # a sample of every class
    state = r.whiten_step(r.initial_state(3), train_x, sample)
    kernel = np.asarray(state[1][r.whiten_index])
    assert kernel.shape == (2, 2, 3, 24) and np.abs(kernel).sum() > 0
    bias_at = [v.path for v in r.model.trainable_variables].index("whiten/bias")
    biases = []
    for _ in range(r.total_steps):
        state, loss = r.train_step(state, train_x, r.data[1], orders, flips)
        biases.append(np.array(state[0][bias_at]))  # a copy: the next step donates the state
        assert np.isfinite(float(loss))
    assert r.whiten_steps == 2 and r.total_steps == 8
    assert not np.allclose(biases[0], biases[1])  # learning in steps 1-2,
    np.testing.assert_array_equal(biases[2], biases[1])  # frozen in steps 3-4
    np.testing.assert_array_equal(biases[3], biases[1])
    assert not np.array_equal(biases[4], biases[1])  # step 5: lookahead pulls it to the average
    assert int(state[4]) == 8
    ema = [np.array(e) for e in state[3]]
    finished = r.finish_step(state)  # donates `state`
    for w, e in zip(finished[0], ema):  # lookahead ends on the average
        np.testing.assert_array_equal(np.asarray(w), e)


def test_a_run_is_reproducible_and_counts_whole_images(sgd_runner):
    first, again = sgd_runner.run(5), sgd_runner.run(5)
    assert first["test_accuracy"] == again["test_accuracy"] and first["final_loss"] == again["final_loss"]
    assert first["test_accuracy"] * 256 == round(first["test_accuracy"] * 256)
    assert first["seconds"] >= first["train_seconds"] > 0


def test_bad_settings_are_refused_with_what_was_received():
    with pytest.raises(ValueError, match="batch_size=0"):
        validate(PRESETS["short"].replace(batch_size=0))
    with pytest.raises(ValueError, match=r"widths.*\(8, 16\)"):
        validate(PRESETS["short"].replace(widths=(8, 16)))
    with pytest.raises(ValueError, match="precision must be one of .* Received: precision='fp16'"):
        validate(PRESETS["short"].replace(precision="fp16"))
    with pytest.raises(ValueError, match="flip must be one of .* Received: flip='sometimes'"):
        validate(PRESETS["short"].replace(flip="sometimes"))
    with pytest.raises(ValueError, match="momentum must be in .* Received: momentum=1.0"):
        validate(PRESETS["short"].replace(momentum=1.0))
