"""One TTA (`layerkit.training.tta`): the views, their weights, and the average of the views' logits
through the one forward function (`layerkit.forward`), on either runtime."""

import keras
import numpy as np
import pytest

from layerkit.forward import Forward
from layerkit.training.tta import predict_probabilities, tta_views


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


def _classifier():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(5, kernel_initializer=keras.initializers.RandomNormal(seed=1))(x)
    logit_model = keras.Model(inputs, logits)
    return logit_model, keras.Model(inputs, keras.layers.Activation("softmax")(logit_model(inputs)))


@pytest.mark.parametrize("runtime", ["jax", "onnxruntime"])
def test_tta_is_the_softmax_of_the_weighted_average_of_logits(runtime):
    logit_model, model = _classifier()
    images = np.random.default_rng(2).normal(size=(64, 6, 6, 3)).astype("float32")
    forward = Forward(model, logits=True, runtime=runtime, batch_size=16, verbose=False)
    assert forward.logits  # the softmax is taken off: the views' logits are averaged
    probs = predict_probabilities(forward, images, "6view")
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-12)
    averaged = sum(w * np.asarray(logit_model(v)) for w, v in tta_views(images, "6view"))
    np.testing.assert_array_equal(probs.argmax(-1), averaged.argmax(-1))
    expected = np.exp(averaged - averaged.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(predict_probabilities(forward, images), np.asarray(model(images)), atol=1e-6)


def test_probabilities_without_a_softmax_to_take_off_are_averaged_as_logs():
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(5)(keras.layers.Flatten()(inputs))))
    images = np.random.default_rng(2).normal(size=(8, 6, 6, 3)).astype("float32")
    forward = Forward(model, logits=True, runtime="jax", verbose=False)
    assert not forward.logits  # a Softmax layer: its outputs are taken as probabilities
    logs = sum(w * np.log(np.asarray(model(v), "float64")) for w, v in tta_views(images, "flip"))
    expected = np.exp(logs - logs.max(-1, keepdims=True))
    np.testing.assert_allclose(predict_probabilities(forward, images, "flip"),
                               expected / expected.sum(-1, keepdims=True), rtol=1e-5)


def test_the_forward_function_serves_weights_loaded_after_it_was_made(tmp_path):
    # finish() makes one forward function and loads the best weights under it: it must then
    # give what one made afresh gives.
    inputs = keras.Input((6, 6, 3))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(3).normal(size=(16, 6, 6, 3)).astype("float32")
    model.save_weights(tmp_path / "first.weights.h5")
    forward = Forward(model, logits=True, runtime="jax", verbose=False)
    before = predict_probabilities(forward, images, "flip")
    rng = np.random.default_rng(4)
    model.set_weights([w + rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    assert not np.allclose(predict_probabilities(forward, images, "flip"), before)
    model.load_weights(tmp_path / "first.weights.h5")
    np.testing.assert_allclose(predict_probabilities(forward, images, "flip"), before, rtol=1e-6)
    fresh = Forward(model, logits=True, runtime="jax", verbose=False)
    np.testing.assert_allclose(predict_probabilities(forward, images, "flip"),
                               predict_probabilities(fresh, images, "flip"), rtol=1e-6)
