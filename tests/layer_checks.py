"""One shared check for every layerkit layer (after Keras's `run_layer_test`).

`check_layer` builds the layer in a `keras.Sequential`, then checks: the config round
trip, the `.keras` save/load round trip (identical outputs), one training step that
changes the weights, the output shape, the parameter count against a hand count, and
(`check_symbolic`) that a symbolic call declares the shape and dtype an eager call returns.
"""

import numpy as np
import keras


def check_symbolic(make_layer, x, training=None):
    """As `run_layer_test`: the layer called on a `keras.Input` of `x`'s dtype declares the
    shape and dtype its eager output has (with `training` as given, and under the
    mixed_bfloat16 policy too). Returns the eager output."""
    for policy in (None, "mixed_bfloat16"):
        kwargs = {} if policy is None else {"dtype": policy}
        symbolic = make_layer(**kwargs)(keras.Input(x.shape[1:], dtype=str(x.dtype)), training=training)
        eager = make_layer(**kwargs)(x, training=training)
        assert keras.backend.standardize_dtype(symbolic.dtype) == keras.backend.standardize_dtype(eager.dtype), (
            f"{policy or 'default'} policy, {x.dtype} input: the symbolic output says {symbolic.dtype}, "
            f"the eager output is {eager.dtype}")
        assert tuple(symbolic.shape[1:]) == tuple(eager.shape[1:]), (symbolic.shape, eager.shape)
    return eager


def check_layer(make_layer, input_shape, expected_params=None, expected_output_shape=None,
                tmp_path=None, atol=1e-6):
    layer = make_layer()
    # Config round trip: a new layer from the config has the same config.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype("float32")
    check_symbolic(lambda **kw: type(layer).from_config({**config, **kw}), x, training=False)
    model = keras.Sequential([keras.Input(input_shape), layer])
    if expected_params is not None:
        assert layer.count_params() == expected_params, (layer.count_params(), expected_params)
    y = model(x, training=False)
    if expected_output_shape is not None:
        assert tuple(y.shape) == (2, *expected_output_shape)

    # One training step moves the trainable weights.
    head = keras.Sequential([model, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    head.compile(optimizer=keras.optimizers.SGD(0.1),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [np.array(w) for w in layer.trainable_weights]
    head.fit(x, np.array([0, 1]), epochs=1, verbose=0)
    after = [np.array(w) for w in layer.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "training step changed nothing"

    # `.keras` round trip reproduces the outputs exactly.
    if tmp_path is not None:
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(
            np.array(loaded(x, training=False)), np.array(model(x, training=False)), atol=atol
        )
    return model
