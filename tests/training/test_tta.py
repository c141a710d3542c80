"""One TTA (`layerkit.training.tta`): the views, their weights, and the ranking of averaged logits."""

import keras
import numpy as np
import pytest

from layerkit.training.tta import tta_model, tta_views


def test_views_weigh_to_one_and_shift_with_reflection():
    images = np.random.default_rng(0).integers(0, 256, (2, 6, 6, 3)).astype("float32")
    for mode, count in (("none", 1), ("flip", 2), ("6view", 6)):
        views = tta_views(images, mode)
        assert len(views) == count and sum(w for w, _ in views) == pytest.approx(1.0)
    views = tta_views(images, "6view")
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(np.asarray(views[1][1]), images[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(views[2][1]), padded[:, :6, :6])
    np.testing.assert_array_equal(np.asarray(views[3][1]), padded[:, :6, :6][:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(views[4][1]), padded[:, 2:8, 2:8])
    with pytest.raises(ValueError, match="tta must be one of none, flip, 6view. Received: tta='8view'"):
        tta_views(images, "8view")


def test_tta_model_ranks_as_the_weighted_average_of_logits():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(5, kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    logit_model = keras.Model(inputs, logits)
    model = keras.Model(inputs, keras.layers.Softmax()(logit_model(inputs)))
    images = np.random.default_rng(2).normal(size=(64, 6, 6, 3)).astype("float32")
    probs = np.asarray(tta_model(model, "6view").predict(images, verbose=0))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    averaged = sum(w * np.asarray(logit_model(v)) for w, v in tta_views(images, "6view"))
    np.testing.assert_array_equal(probs.argmax(-1), averaged.argmax(-1))
    expected = np.exp(averaged - averaged.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert tta_model(model, "none") is model


def test_a_tta_model_serves_weights_loaded_after_it_was_made(tmp_path):
    # finish() makes one TTA model and loads the best weights under it: its compiled predict
    # step must then give what a TTA model made afresh gives.
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(3).normal(size=(16, 6, 6, 3)).astype("float32")
    model.save_weights(tmp_path / "first.weights.h5")
    tta = tta_model(model, "flip")
    before = tta.predict(images, verbose=0)
    rng = np.random.default_rng(4)
    model.set_weights([w + rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    assert not np.allclose(tta.predict(images, verbose=0), before)
    model.load_weights(tmp_path / "first.weights.h5")
    np.testing.assert_allclose(tta.predict(images, verbose=0), before, rtol=1e-6)
    np.testing.assert_allclose(tta.predict(images, verbose=0), tta_model(model, "flip").predict(images, verbose=0),
                               rtol=1e-6)
