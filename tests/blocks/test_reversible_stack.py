"""ReversibleStack: the custom backward pass against plain autodiff of the same network."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import keras

from layerkit.blocks import ReversibleStack
from tests.layer_checks import check_layer

SHAPE = (6, 6, 8)


def bn(c):
    return 4 * c


def conv(k, cin, cout):
    return k * k * cin * cout


def _run_in_subprocess(code, **env):
    """Run `code` in a fresh interpreter (jax x64 or device flags must not leak); its last
    stdout line is JSON."""
    full_env = {**os.environ, "KERAS_BACKEND": "jax", **env}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# The gradient check, run in float64 (subprocess) and float32 (here). Builds a stack with
# BatchNorm in F and G and random moving statistics, copies its weights into the same
# stack with reversible=False, and compares loss, gradients w.r.t. the input and every
# weight, and the new moving statistics of one training-mode pass.
GRADIENT_CHECK = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
import keras
from layerkit.blocks import ReversibleStack

def gradient_check(dtype, bottleneck, blocks=2, filters=16):
    keras.utils.set_random_seed(0)
    shape = (4, 6, 6, filters)
    kw = dict(blocks=blocks, filters=filters, bottleneck=bottleneck, dtype=dtype)
    rev, plain = ReversibleStack(**kw), ReversibleStack(reversible=False, **kw)
    rev.build(shape); plain.build(shape)
    rng = np.random.default_rng(1)
    for v in rev.non_trainable_variables:  # moving statistics away from 0 / 1
        v.assign(rng.uniform(0.5, 1.5, size=v.shape))
    for v in rev.trainable_variables:
        v.assign(np.array(v) + rng.normal(scale=0.1, size=v.shape))
    plain.set_weights(rev.get_weights())
    x = rng.normal(size=shape).astype(dtype)
    target = rng.normal(size=shape).astype(dtype)
    initial_stats = [v.value for v in plain.non_trainable_variables]  # stateless: unchanged
    results = []
    for layer in (rev, plain):
        tv = [v.value for v in layer.trainable_variables]
        ntv = [v.value for v in layer.non_trainable_variables]
        def loss(tv, x):
            y, new_ntv = layer.stateless_call(tv, ntv, x, training=True)
            return jnp.sum((y - target) ** 2 * jnp.cos(y)), new_ntv
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (value, new_ntv), (dw, dx) = step(tv, x)
        results.append((value, new_ntv, dw, dx))
    (lr, sr, dwr, dxr), (lp, sp, dwp, dxp) = results
    rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
    return dict(
        loss=rel(lr, lp), dx=rel(dxr, dxp), dw=max(rel(a, b) for a, b in zip(dwr, dwp)),
        n_weights=len(dwr), stats=max(rel(a, b) for a, b in zip(sr, sp)),
        stats_moved=min(float(jnp.max(jnp.abs(a - b))) for a, b in zip(sr, initial_stats)),
    )
"""


@pytest.fixture(scope="module")
def float64_results():
    code = GRADIENT_CHECK + """
jax.config.update("jax_enable_x64", True)
print(json.dumps({str(b): gradient_check("float64", b) for b in (False, True)}))
"""
    return _run_in_subprocess(code)


@pytest.mark.parametrize("bottleneck", [False, True])
def test_float64_gradients_equal_plain_autodiff(float64_results, bottleneck):
    r = float64_results[str(bottleneck)]
    # blocks x (F, G) x convolutions x (kernel, gamma, beta)
    assert r["n_weights"] == 2 * 2 * (3 if bottleneck else 2) * 3
    assert r["loss"] < 1e-12, r
    assert r["dx"] < 1e-10, r
    assert r["dw"] < 1e-10, r
    assert r["stats"] < 1e-12, r  # moving statistics updated exactly as plain backprop
    assert r["stats_moved"] > 0, r  # ...and they did move


# Measured on CPU (2 blocks, 16 channels, batch 4): float64 input/weight gradients 4e-16 /
# 2e-15 relative (bottleneck 3e-16 / 4e-15); float32 3e-7 / 6e-7 (bottleneck 2e-7 / 3e-6).
# The float32 tolerance leaves room for deeper stacks and other CPUs: the reconstruction
# rounds at float32 epsilon per block.
FLOAT32_TOLERANCE = 1e-4


@pytest.mark.parametrize("bottleneck", [False, pytest.param(True, marks=pytest.mark.large)])
def test_float32_gradients_match_plain_autodiff(bottleneck):
    scope = {}
    exec(GRADIENT_CHECK, scope)
    r = scope["gradient_check"]("float32", bottleneck)
    assert r["dx"] < FLOAT32_TOLERANCE, r
    assert r["dw"] < FLOAT32_TOLERANCE, r
    assert r["stats"] < 1e-5, r


def test_layer_contract(tmp_path):
    per_block = 2 * (bn(4) + conv(3, 4, 4) + bn(4) + conv(3, 4, 4))
    check_layer(lambda: ReversibleStack(2, 8), SHAPE, 2 * per_block, SHAPE, tmp_path)


@pytest.mark.large
def test_bottleneck_layer_contract(tmp_path):
    per_function = bn(8) + conv(1, 8, 2) + bn(2) + conv(3, 2, 2) + bn(2) + conv(1, 2, 8)
    check_layer(lambda: ReversibleStack(2, 16, bottleneck=True, reversible=False),
                (6, 6, 16), 2 * 2 * per_function, (6, 6, 16), tmp_path)


def test_inverse_recovers_the_input():
    stack = ReversibleStack(4, 8)
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    y = stack(x, training=False)
    assert not np.allclose(np.array(y), x, atol=1e-2)
    # float32: four blocks of default-initialised convolutions round at ~1e-5
    np.testing.assert_allclose(np.array(stack.inverse(y)), x, rtol=1e-4, atol=1e-4)


def _model(reversible, policy=None):
    inputs = keras.Input(SHAPE)
    h = keras.layers.Conv2D(8, 3, padding="same", name="stem", dtype=policy)(inputs)
    h = ReversibleStack(3, 8, reversible=reversible, name="stack", dtype=policy)(h)
    h = keras.layers.GlobalAveragePooling2D(dtype=policy)(h)
    outputs = keras.layers.Dense(3, name="head", dtype="float32")(h)
    return keras.Model(inputs, outputs)


def _one_step(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9), jit_compile=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return model


def test_one_training_step_equals_plain_backprop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *SHAPE)).astype("float32")
    y = rng.integers(0, 3, size=8)
    rev, plain = _model(True), _model(False)
    plain.set_weights(rev.get_weights())
    before = [np.array(w) for w in rev.weights]
    _one_step(rev, x, y)
    _one_step(plain, x, y)
    names = [w.path for w in rev.weights]
    assert names == [w.path for w in plain.weights]
    stats = [i for i, w in enumerate(rev.weights) if "moving" in w.path]
    assert len(stats) == 3 * 2 * 2 * 2  # blocks x F,G x BNs x (mean, variance)
    for i, (a, b, w0) in enumerate(zip(rev.weights, plain.weights, before)):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6, err_msg=names[i])
        assert not np.allclose(np.array(a), w0), f"{names[i]} did not change"


@pytest.mark.large
def test_mixed_precision_training_step():
    """bfloat16 compute: the step deviates from a float32 step no more than plain backprop's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *SHAPE)).astype("float32")
    y = rng.integers(0, 3, size=8)
    reference = _model(False)
    initial = reference.get_weights()
    _one_step(reference, x, y)
    deviation = {}
    for reversible in (True, False):
        model = _model(reversible, "mixed_bfloat16")
        model.set_weights(initial)
        stack = model.get_layer("stack")
        assert stack.compute_dtype == "bfloat16" and stack.variable_dtype == "float32"
        _one_step(model, x, y)
        # each weight's deviation from the float32 step, relative to the size of that step
        deviation[reversible] = max(
            np.max(np.abs(np.array(a) - np.array(b))) / (np.max(np.abs(np.array(b) - w0)) + 1e-12)
            for a, b, w0 in zip(model.weights, reference.weights, initial)
        )
        assert all(np.isfinite(np.array(w)).all() for w in model.weights)
    # measured: reversible 0.23, plain 0.16 of a step (bf16 has 8 mantissa bits)
    assert deviation[True] < 0.5, deviation
    assert deviation[True] < 3 * deviation[False], deviation


def test_reversible_false_is_the_same_function():
    rev, plain = _model(True), _model(False)
    plain.set_weights(rev.get_weights())
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    for training in (False, True):
        np.testing.assert_allclose(np.array(rev(x, training=training)),
                                   np.array(plain(x, training=training)), rtol=1e-5, atol=1e-5)


@pytest.mark.large
def test_data_parallel_training_step():
    """Two virtual CPU devices, keras.distribution.DataParallel, jit-compiled fit."""
    code = """
    import json, numpy as np, keras, jax
    from layerkit.blocks import ReversibleStack
    assert len(jax.devices()) == 2
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    def model(reversible):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 6, 8))
        h = ReversibleStack(2, 8, reversible=reversible)(inputs)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(inputs, keras.layers.Dense(3)(h))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6, 6, 8)).astype("float32"), rng.integers(0, 3, 8)
    weights = []
    for reversible in (True, False):
        m = model(reversible)
        m.compile(keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        weights.append([np.array(w) for w in m.weights])
    print(json.dumps(max(float(np.max(np.abs(a - b))) for a, b in zip(*weights))))
    """
    diff = _run_in_subprocess(code, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert diff < 1e-5


def test_other_backends_fall_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.warns(UserWarning, match="needs the JAX backend"):
        stack = ReversibleStack(1, 8)
    assert not stack._custom_backward
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ReversibleStack(1, 8, reversible=False)  # no warning when not asked for


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(blocks=0, filters=8), "blocks=0"),
        (dict(blocks=2, filters=7), "filters=7"),
        (dict(blocks=2, filters=12, bottleneck=True), "filters=12"),
        (dict(blocks=2, filters=8, momentum=2), "momentum=2"),
    ],
)
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ReversibleStack(**kwargs)


def test_input_must_have_filters_channels():
    with pytest.raises(ValueError, match="filters=8"):
        ReversibleStack(2, 8).build((1, 4, 4, 16))
