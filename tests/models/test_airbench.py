"""The airbench zoo models: partial identity init, the hand parameter count, whitening fitted by
build_model on the training images, a .keras round trip."""

import keras
import numpy as np
import pytest

from layerkit import augment, models
from layerkit.models.initializers import PartialDirac
from layerkit.training import get_recipe
from layerkit.training.data import RunData
from layerkit.training.run import build_model, compile_model
from tests.test_saving import FakePipe


def test_partial_dirac_starts_as_identity_on_the_first_channels():
    kernel = np.asarray(PartialDirac(seed=1)((3, 3, 4, 10)))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    y = np.asarray(keras.ops.conv(x, kernel, padding="same"))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    rest = kernel[..., 4:]
    assert np.abs(rest).max() <= 1 / np.sqrt(36) and rest.std() > 0.05  # uniform(+-1/sqrt(fan_in))
    with pytest.raises(ValueError, match=r"Received: shape=\(3, 4\)"):
        PartialDirac()((3, 4))


def test_airbench94_counts_the_hand_formula():
    model = models.create("airbench94")
    widths, cin, trainable = (64, 256, 256), 24, 24  # whitening bias
    for w in widths:
        trainable += 9 * cin * w + w + 9 * w * w + w  # two convs, two BN biases (no BN scale)
        cin = w
    trainable += widths[-1] * 10
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == trainable == 1_971_352
    assert models.create("airbench96", widths=(8, 16, 16)).get_layer("block0_conv3") is not None
    with pytest.raises(ValueError, match="block_depth"):
        models.create("airbench94", block_depth=4)


def test_build_model_fits_the_whitening_on_normalised_training_images(tmp_path):
    config = get_recipe("speedrun-94-sgd", smoke_run=True)
    config.model_options = {**config.model_options, "widths": [8, 16, 16]}
    pipe = FakePipe((32, 32, 3), images=64)
    data = RunData(pipe, pipe, pipe, tuple(f"c{i}" for i in range(10)), (32, 32, 3), "validation", {})
    model = build_model(config, data, steps_per_epoch=2)
    whiten = model.get_layer("airbench94").get_layer("whiten")
    normalize = model.get_layer("normalize")
    x = np.asarray(normalize(pipe.images.astype("float32")))
    np.testing.assert_allclose(np.asarray(whiten.kernel), np.asarray(augment.whitening_kernel(x, 2, 5e-4)),
                               rtol=1e-3, atol=1e-3)
    assert isinstance(model.layers[1], augment.AlternatingFlip)
    compile_model(model, config, steps_per_epoch=2)
    model.fit(pipe.images[:32], pipe.labels[:32], batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded.predict(pipe.images[:4], verbose=0)),
                               np.asarray(model.predict(pipe.images[:4], verbose=0)), atol=1e-5)
    assert loaded.optimizer.get_config()["lookahead_steps"] == config.epochs * 2
