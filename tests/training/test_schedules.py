import numpy as np
import pytest
import keras

from layerkit.training import Config
from layerkit.training.losses import SparseCategoricalCrossentropy
from layerkit.training.schedules import OneCycle, WarmupExponential, lr_at, make_schedule


def test_warmup_exponential():
    s = WarmupExponential(peak_lr=1.0, warmup_steps=10, steps_per_epoch=10, decay_rate=0.5, min_lr=0.01)
    assert lr_at(s, 0) == pytest.approx(0.01)  # the ramp starts at 0, floored at min_lr
    assert lr_at(s, 5) == pytest.approx(0.5)
    assert lr_at(s, 10) == pytest.approx(1.0)
    assert lr_at(s, 20) == pytest.approx(0.5)
    assert lr_at(s, 30) == pytest.approx(0.25)
    assert lr_at(s, 1000) == pytest.approx(0.01)
    assert WarmupExponential.from_config(s.get_config()).get_config() == s.get_config()


def test_one_cycle():
    s = OneCycle(peak_lr=1.0, total_steps=100, warmup_steps=25, start_lr=0.0)
    assert [round(lr_at(s, t), 4) for t in (0, 25, 50, 100, 200)] == [0.0, 1.0, pytest.approx(2 / 3, abs=1e-4), 0.0, 0.0]


def test_step_and_cosine_from_config():
    c = Config(lr=0.1, epochs=10, schedule="step", step_epochs=(2, 5), step_factor=0.1)
    s = make_schedule(c, steps_per_epoch=10)
    assert [round(lr_at(s, t), 6) for t in (0, 19, 21, 49, 51)] == [0.1, 0.1, 0.01, 0.01, 0.001]
    c = Config(lr=0.1, epochs=10, schedule="cosine", warmup_epochs=1)
    s = make_schedule(c, steps_per_epoch=10)
    assert lr_at(s, 0) == pytest.approx(0.0) and lr_at(s, 10) == pytest.approx(0.1)
    assert lr_at(s, 100) == pytest.approx(0.0, abs=1e-6)


def test_label_smoothing_loss_matches_manual():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    labels = np.array([0, 2])
    loss = SparseCategoricalCrossentropy(label_smoothing=0.3)(labels, probs)
    target = np.eye(3)[labels] * 0.7 + 0.1
    expected = np.mean(-(target * np.log(probs)).sum(-1))
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="label_smoothing"):
        SparseCategoricalCrossentropy(label_smoothing=1.0)


def test_piecewise_linear_is_airbenchs_interpolation():
    from layerkit.training.schedules import PiecewiseLinear

    s = PiecewiseLinear(peak_lr=2.0, total_steps=100, warmup_steps=23.0, start_lr=0.4, end_lr=0.14)
    for step in (0, 10, 23, 60, 100, 120):
        expected = np.interp(step, [0, 23, 100], [0.4, 2.0, 0.14])
        assert lr_at(s, step) == pytest.approx(expected, rel=1e-5)
    flat_start = PiecewiseLinear(peak_lr=1.0, total_steps=10, warmup_steps=0, start_lr=1.0, end_lr=0.0)
    assert [lr_at(flat_start, t) for t in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert type(s).from_config(s.get_config()).get_config() == s.get_config()
