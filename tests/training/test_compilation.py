"""Fast compilation for smoke runs, and the command line's persistent compilation cache."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from layerkit.training.compilation import cache_dir, fast_compile, use_persistent_cache


def test_fast_compile_holds_for_the_block_only():
    assert not jax.config.values["jax_disable_most_optimizations"]
    with fast_compile(True):
        assert jax.config.values["jax_disable_most_optimizations"]
    with fast_compile(False):
        assert not jax.config.values["jax_disable_most_optimizations"]
    with pytest.raises(RuntimeError), fast_compile(True):
        raise RuntimeError("a failed run")
    assert not jax.config.values["jax_disable_most_optimizations"]


def test_fast_compile_gives_the_same_numbers_to_rounding():
    x = jax.random.normal(jax.random.key(0), (64, 64))

    def f(x):
        return jax.nn.softmax(jax.numpy.tanh(x @ x.T) @ x)

    expected = jax.jit(f)(x)
    with fast_compile(True):
        fast = jax.jit(lambda x: f(x))(x)  # a new function: compiled within the block
    assert jax.numpy.allclose(fast, expected, rtol=1e-5, atol=1e-6)



INIT = ("import hashlib, sys, keras, numpy as np\n"
        "from layerkit.training.compilation import fast_compile\n"
        "def init():\n"
        "    return hashlib.md5(np.asarray(keras.initializers.GlorotUniform(seed=1)((64, 64))).tobytes()).hexdigest()\n")


def test_a_run_in_the_block_computes_the_bits_of_a_fresh_process():
    """Eager ops compiled before the block do not run optimised inside it, nor the block's
    unoptimised ones after it: in one process, as in a fresh one that starts in the block."""
    code = INIT + ("warm = sys.argv[1] == 'warm'\n"
                   "before = init() if warm else None\n"
                   "with fast_compile(True):\n"
                   "    fast = init()\n"
                   "after = init()\n"
                   "print(fast, after, before)\n")

    def run(mode):
        done = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "KERAS_BACKEND": "jax"})
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    fast, after, before = run("warm")
    fresh_fast, fresh_after, _ = run("cold")
    assert fast == fresh_fast and after == fresh_after == before

@pytest.mark.parametrize("environ, expected", [
    ({}, Path("~/.cache/layerkit/jax").expanduser()),
    ({"XDG_CACHE_HOME": "/x/cache"}, Path("/x/cache/layerkit/jax")),
    ({"LAYERKIT_CACHE_DIR": "/y/jax", "XDG_CACHE_HOME": "/x/cache"}, Path("/y/jax")),
    ({"LAYERKIT_CACHE_DIR": "off"}, None),
    ({"LAYERKIT_CACHE_DIR": ""}, None),
    ({"LAYERKIT_CACHE_DIR": "0"}, None),
])
def test_cache_dir_from_the_environment(environ, expected):
    assert cache_dir(environ) == expected


def test_the_users_own_jax_cache_is_left_alone(tmp_path):
    previous = jax.config.values["jax_compilation_cache_dir"]  # the test session's (conftest)
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert use_persistent_cache({"LAYERKIT_CACHE_DIR": "off"}) is None
        assert jax.config.values["jax_compilation_cache_dir"] is None
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))  # nothing compiles meanwhile
        assert use_persistent_cache({"LAYERKIT_CACHE_DIR": str(tmp_path / "ours")}) is None
        assert jax.config.values["jax_compilation_cache_dir"] == str(tmp_path / "theirs")
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
    assert not (tmp_path / "ours").exists()


def test_train_keeps_compiled_programs_where_asked_and_nowhere_when_off(tmp_path):
    def smoke(out, cache):
        env = {**os.environ, "LAYERKIT_CACHE_DIR": cache, "XDG_CACHE_HOME": str(tmp_path / "xdg"),
               "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", out, "report=false"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]

    cache = tmp_path / "cache"
    smoke("run", str(cache))
    entries = sorted(cache.iterdir())
    assert any(p.name.startswith("jit_train_step") for p in entries), [p.name for p in entries][:20]
    smoke("again", "off")
    assert sorted(cache.iterdir()) == entries  # nothing more there,
    assert not (tmp_path / "xdg" / "layerkit").exists() and not (tmp_path / "off").exists()  # nor by default
