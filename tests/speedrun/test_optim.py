"""The speed run's optimiser against hand-written NumPy references."""

import math

import numpy as np
import pytest

from layerkit.speedrun import PRESETS
from layerkit.speedrun import optim


def test_decoupled_settings_convert_to_airbench_raw_values():
    raw_lr, l2 = optim.sgd_coefficients(11.5, 0.0153, 0.85, 1024)
    kilostep = 1024 * (1 + 1 / 0.15)
    assert raw_lr == pytest.approx(11.5 / kilostep)
    assert raw_lr * l2 == pytest.approx(0.0153 * 1024 / kilostep)  # decay per step, independent of lr
    assert optim.sgd_coefficients(0.0, 0.01, 0.9, 512) == (0.0, 0.0)


def test_sgd_group_matches_pytorch_nesterov_on_the_summed_loss():
    group = optim.Group("sgd", lr=0.01, l2=0.5, momentum=0.9, schedule="main")
    rng = np.random.default_rng(0)
    w, buf = rng.normal(size=5).astype("float32"), np.zeros(5, "float32")
    ref_w, ref_buf = w.astype("float64"), np.zeros(5)
    for t in range(3):
        g_mean = rng.normal(size=5).astype("float32")
        [w], [buf] = optim.apply([group], [w], [g_mean], [buf], {"main": 0.5}, 8, 3, np.float32)
        d = 8 * g_mean + 0.5 * ref_w
        ref_buf = 0.9 * ref_buf + d
        ref_w = ref_w - 0.01 * 0.5 * (d + 0.9 * ref_buf)
    np.testing.assert_allclose(np.asarray(w), ref_w, rtol=1e-5)


def test_orthogonalize_maps_singular_values_near_one():
    m = np.random.default_rng(0).normal(size=(16, 72)) * np.linspace(0.01, 10, 72)
    s = np.linalg.svd(np.asarray(optim.orthogonalize(m.astype("float32"), 5, np.float32)), compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.5  # from a condition number of 1000
    tall = np.asarray(optim.orthogonalize(m.T.astype("float32"), 5, np.float32))
    np.testing.assert_allclose(tall, np.asarray(optim.orthogonalize(m.astype("float32"), 5, np.float32)).T,
                               atol=1e-4)


def test_muon_step_renormalises_the_filters_and_moves_them_a_fixed_amount():
    group = optim.Group("muon", lr=0.1, l2=0.0, momentum=0.6, schedule="main")
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 3, 4, 8)).astype("float32") * 7
    g = rng.normal(size=w.shape).astype("float32")
    [new], [buf] = optim.apply([group], [w], [g], [np.zeros_like(w)], {"main": 1.0}, 16, 5, np.float32)
    normalised = w * math.sqrt(8) / np.linalg.norm(w)
    step = (normalised - np.asarray(new)).reshape(-1, 8) / 0.1
    s = np.linalg.svd(step, compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.5
    np.testing.assert_allclose(np.asarray(buf), 16 * g, rtol=1e-6)


def test_schedule_rises_peaks_and_ends_where_asked():
    config = PRESETS["short-sgd"]
    total = 100
    values = [float(optim.lr_multiplier(s, total, config)) for s in (0, 23, 100)]
    assert values == pytest.approx([0.2, 1.0, 0.07], abs=1e-6)
    muon = PRESETS["short"]
    assert [float(optim.lr_multiplier(s, total, muon)) for s in (0, 50, 100)] == pytest.approx([1, 0.5, 0])
    assert float(optim.whiten_multiplier(10, 30, 0.9, muon)) == pytest.approx(2 / 3)
    assert float(optim.whiten_multiplier(30, 30, 0.9, muon)) == 0.0
    assert float(optim.whiten_multiplier(10, 30, 0.9, config)) == pytest.approx(0.9)


def test_lookahead_moves_only_every_fifth_step():
    w, ema = [np.full(3, 2.0, "float32")], [np.zeros(3, "float32")]
    same, same_ema = optim.lookahead(w, ema, 4, 10)
    np.testing.assert_array_equal(np.asarray(same[0]), w[0])
    np.testing.assert_array_equal(np.asarray(same_ema[0]), ema[0])
    moved, new_ema = optim.lookahead(w, ema, 5, 10)
    decay = 0.95 ** 5 * 0.5 ** 3
    np.testing.assert_allclose(np.asarray(new_ema[0]), 2 * (1 - decay), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(moved[0]), np.asarray(new_ema[0]))


def test_every_variable_of_the_net_has_a_group_and_strangers_are_refused():
    assert optim.group_of("block0_conv1/kernel") == "filters"
    assert optim.group_of("block2_bn2/beta") == "bias"
    assert optim.group_of("whiten/bias") == "whiten_bias"
    assert optim.group_of("head/kernel") == "head"
    with pytest.raises(ValueError, match="no optimiser group for variable 'extra/gamma'"):
        optim.group_of("extra/gamma")
