"""The rules that fit a bare run's image size, batch size and model to the data, and the
progress lines of a phase: pure functions and one thread, no training."""

import io
import time

import numpy as np
import pytest

from layerkit.training import fit
from layerkit.training.callbacks import Heartbeat


@pytest.mark.parametrize("sizes, side, why", [
    ([[32, 32]] * 3, 32, "as stored: every image is 32x32"),
    ([[192, 192]], 192, "as stored"),
    ([[32, 48]] * 2, None, "as stored: every image is 32x48"),  # one size, not square: kept as it is
    ([[4032, 3024]] * 2, 128, "outside 16..256 px"),  # phone photos: not trained at 4032 px
    ([[8, 8]] * 2, 32, "outside 16..256 px"),  # too small for three poolings
    ([[24, 30], [48, 40], [100, 60]], 40, "3 sizes from 24 to 100 px a side"),  # the median shorter side
])
def test_image_size_rule(sizes, side, why):
    got, reason = fit.image_size(np.array(sizes))
    assert got == side and why in reason


@pytest.mark.parametrize("images, devices, batch", [
    (4500, 1, 256),  # the embedded sample: what `make demo` has always trained
    (245, 1, 32), (100, 1, 16), (5, 1, 2), (2, 1, 2), (1, 1, 1), (245, 3, 30), (4500, 8, 256),
])
def test_batch_size_rule(images, devices, batch):
    got, reason = fit.batch_size(images, devices)
    assert got == batch and got % devices == 0 and images // got >= 1
    assert f"{images // got} full batch" in reason


def test_model_rule():
    assert fit.model(4500)[:2] == ("airbench94", {"widths": [16, 64, 64]})
    assert fit.model(45000)[:2] == ("airbench94", {"widths": [64, 256, 256]})


def test_heartbeat_lines_say_step_speed_elapsed_and_eta():
    out = io.StringIO()
    beat = Heartbeat(0.05, out)
    try:
        beat.begin("epoch 1/2", total=10, images_per_step=32)
        time.sleep(0.2)
        assert "epoch 1/2: step 0/10" in out.getvalue() and "compiling or waiting for the first step" in out.getvalue()
        beat.advance(4)
        time.sleep(0.2)
        last = out.getvalue().splitlines()[-1]
        assert "step 4/10" in last and "images/s" in last and "elapsed" in last and "ETA" in last
        beat.advance(10)
        beat.then("validating (2 batches)")
        time.sleep(0.2)
        assert out.getvalue().splitlines()[-1].endswith("validating (2 batches)")
        beat.end()
        time.sleep(0.15)
        printed = len(out.getvalue())
        time.sleep(0.2)
        assert len(out.getvalue()) == printed  # no phase, no line
    finally:
        beat.close()
    with pytest.raises(ValueError, match="LAYERKIT_PROGRESS_SECONDS must be a number of seconds > 0"):
        Heartbeat(0)
    with pytest.raises(ValueError, match="Received: .abc."):
        Heartbeat("abc")
