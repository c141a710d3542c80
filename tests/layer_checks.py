"""One shared check for every layerkit layer (after Keras's `run_layer_test`).

`check_layer` builds the layer in a `keras.Sequential`, then checks: the config round
trip, the `.keras` save/load round trip (identical outputs), one training step that
changes the weights, the output shape, and the parameter count against a hand count.
"""

import numpy as np
import keras


def check_layer(make_layer, input_shape, expected_params=None, expected_output_shape=None,
                tmp_path=None, atol=1e-6):
    layer = make_layer()
    # Config round trip: a new layer from the config has the same config.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    model = keras.Sequential([keras.Input(input_shape), layer])
    if expected_params is not None:
        assert layer.count_params() == expected_params, (layer.count_params(), expected_params)
    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype("float32")
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
