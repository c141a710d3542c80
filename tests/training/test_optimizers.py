"""MuonNesterov (optimizer=muon / decoupled-sgd) against hand-written NumPy references."""

import math

import keras
import numpy as np
import pytest

from layerkit.training.optimizers import MuonNesterov, group_of, orthogonalize, sgd_coefficients


def _step(opt, variables, grads):
    opt.apply(grads, variables)
    return [np.asarray(v) for v in variables]


def test_decoupled_settings_convert_to_airbench_raw_values():
    raw_lr, l2 = sgd_coefficients(11.5, 0.0153, 0.85, 1024)
    kilostep = 1024 * (1 + 1 / 0.15)
    assert raw_lr == pytest.approx(11.5 / kilostep)
    assert raw_lr * l2 == pytest.approx(0.0153 * 1024 / kilostep)  # decay per step, independent of lr
    assert sgd_coefficients(0.0, 0.01, 0.9, 512) == (0.0, 0.0)


def test_groups_by_rank_and_name():
    assert group_of("block0_conv1/kernel", 4) == "filters"
    assert group_of("block2_bn2/beta", 1) == "bias"
    assert group_of("whiten/bias", 1) == "whiten_bias"
    assert group_of("airbench94/whiten/bias", 1) == "whiten_bias"
    assert group_of("head/kernel", 2) == "head"
    with pytest.raises(ValueError, match="no group for the 3-D variable 'odd/kernel'"):
        group_of("odd/kernel", 3)


def test_sgd_group_matches_pytorch_nesterov_on_the_summed_loss():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=5).astype("float32")
    var = keras.Variable(w0, name="bias")
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [2.0, 1.0])  # multiplier 1, then 0.5
    opt = MuonNesterov(schedule, base_lr=2.0, batch_size=8, momentum=0.9, decay_per_1024=0.01, muon=False,
                       bias_lr=3.0)
    raw, l2 = sgd_coefficients(3.0, 0.01, 0.9, 8)
    ref_w, ref_buf = w0.astype("float64"), np.zeros(5)
    for t in range(3):
        g_mean = rng.normal(size=5).astype("float32")
        [w] = _step(opt, [var], [g_mean])
        s = 1.0 if t == 0 else 0.5
        d = 8 * g_mean + l2 * ref_w
        ref_buf = 0.9 * ref_buf + d
        ref_w = ref_w - raw * s * (d + 0.9 * ref_buf)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5)


def test_orthogonalize_maps_singular_values_near_one():
    m = np.random.default_rng(0).normal(size=(16, 72)) * np.linspace(0.01, 10, 72)
    s = np.linalg.svd(np.asarray(orthogonalize(m.astype("float32"), 5, "float32")), compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.5  # from a condition number of 1000
    tall = np.asarray(orthogonalize(m.T.astype("float32"), 5, "float32"))
    np.testing.assert_allclose(tall, np.asarray(orthogonalize(m.astype("float32"), 5, "float32")).T, atol=1e-4)


def test_muon_step_renormalises_the_filters_and_moves_them_a_fixed_amount():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 3, 4, 8)).astype("float32") * 7
    g = rng.normal(size=w.shape).astype("float32")
    var = keras.Variable(w, name="kernel")
    opt = MuonNesterov(0.1, base_lr=0.1, batch_size=16, muon_momentum=0.6, muon_steps=5,
                       newton_schulz_dtype="float32")
    [new] = _step(opt, [var], [g])
    normalised = w * math.sqrt(8) / np.linalg.norm(w)
    step = (normalised - new).reshape(-1, 8) / 0.1
    s = np.linalg.svd(step, compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.5
    np.testing.assert_allclose(np.asarray(opt.momentums[0]), 16 * g, rtol=1e-6)


def test_whitening_bias_learns_then_freezes():
    var = keras.Variable(np.zeros(3, "float32"), name="bias")
    var_path = "whiten/bias"
    opt = MuonNesterov(1.0, base_lr=1.0, batch_size=4, momentum=0.0, whiten_bias_steps=2, whiten_bias_decay=True)
    opt.build([var])
    opt._groups = [group_of(var_path, 1)]
    values = [_step(opt, [var], [np.ones(3, "float32")])[0] for _ in range(4)]
    raw, _ = sgd_coefficients(1.0, 0.0, 0.0, 4)
    np.testing.assert_allclose(values[0], -raw * 4 * 1.0, rtol=1e-6)  # multiplier 1 at step 0
    np.testing.assert_allclose(values[1], values[0] - raw * 4 * 0.5, rtol=1e-6)  # 1 - 1/2 at step 1
    np.testing.assert_array_equal(values[2], values[1])  # frozen from step 2
    np.testing.assert_array_equal(values[3], values[1])


def test_lookahead_pulls_every_fifth_step_and_ends_on_the_slow_weights():
    var = keras.Variable(np.zeros(2, "float32"), name="bias")
    opt = MuonNesterov(1.0, base_lr=1.0, batch_size=1, momentum=0.0, lookahead_steps=7)
    raw, _ = sgd_coefficients(1.0, 0.0, 0.0, 1)
    g = -np.ones(2, "float32") / raw  # each step adds 1 to the weights
    seen = [_step(opt, [var], [g])[0][0] for _ in range(7)]
    np.testing.assert_allclose(seen[:4], [1, 2, 3, 4], rtol=1e-6)
    decay = 0.95 ** 5 * (5 / 7) ** 3
    slow = (1 - decay) * 5.0  # from the initial 0 towards 5
    np.testing.assert_allclose(seen[4], slow, rtol=1e-5)  # step 5: weights := slow weights
    np.testing.assert_allclose(np.asarray(opt.slow_weights[0])[0], seen[6], rtol=1e-6)  # step 7 = the last
    np.testing.assert_allclose(seen[6], slow, rtol=1e-5)  # ends on the slow weights (not pulled at 7)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"momentum must be a number \[0.0, 1.0\). Received: momentum=1.5"):
        MuonNesterov(1.0, base_lr=1.0, batch_size=8, momentum=1.5)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        MuonNesterov(1.0, base_lr=1.0, batch_size=0)


def test_config_round_trip():
    opt = MuonNesterov(0.2, base_lr=0.2, batch_size=64, head_lr=3.0, lookahead_steps=10, muon=False)
    clone = MuonNesterov.from_config(opt.get_config())
    assert clone.get_config() == opt.get_config()
