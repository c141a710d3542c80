"""Checkpoints load anywhere: after `import layerkit` alone, with plain Keras or `layerkit.load_model`."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import layerkit
from layerkit import _registration
from layerkit.training import recipes
from layerkit.training.data import RunData
from layerkit.training.run import build_model, compile_model, precision

SRC = Path(layerkit.__file__).parent
DECORATOR = re.compile(r"@keras\.saving\.register_keras_serializable\([^)]*\)\s*\nclass (\w+)")


def _python(code: str, timeout=120) -> subprocess.CompletedProcess:
    """`code` in a fresh Python. Its compilations use the test session's persistent cache
    (tests/conftest.py), as JAX's own environment variables set it up: building a model compiles
    an initialiser per weight shape, which a model built in this process has already compiled."""
    env = dict(os.environ)
    if env.get("LAYERKIT_CACHE_DIR", "off") != "off":
        env.update(JAX_COMPILATION_CACHE_DIR=env["LAYERKIT_CACHE_DIR"], JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def test_serializable_modules_list_every_registered_class():
    for path in SRC.rglob("*.py"):
        if DECORATOR.search(path.read_text()):
            module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
            assert any(module == m or module.startswith(m + ".") for m in _registration.SERIALIZABLE_MODULES), \
                f"{module} registers serializable classes but is not in SERIALIZABLE_MODULES"


def test_import_layerkit_registers_every_class_without_importing_keras():
    classes = sorted(c for p in SRC.rglob("*.py") for c in DECORATOR.findall(p.read_text()))
    assert len(classes) >= 17
    result = _python(
        "import sys, layerkit\n"
        "assert 'keras' not in sys.modules, 'import layerkit imported keras'\n"
        "import keras\n"
        f"missing = [c for c in {classes!r} if keras.saving.get_registered_object('layerkit>' + c) is None]\n"
        "print('missing', missing)\n")
    assert result.returncode == 0, result.stderr
    assert "missing []" in result.stdout


class FakePipe:
    """What `build_model` reads of a training pipeline: labels and images (0..255)."""

    def __init__(self, shape, classes=10, images=40):
        self.labels = np.arange(images) % classes
        self.images = np.random.default_rng(0).integers(0, 256, (images, *shape), dtype=np.uint8)

    def read(self, idx):
        return self.images[idx]


def _save_recipe_models(out: Path) -> dict:
    """Each recipe's model built, compiled and saved as training does (smoke size, untrained)."""
    expected = {}
    for name in recipes.names():
        config = recipes.get(name, smoke_run=True)
        shape = (config.image_size or 32, config.image_size or 32, 3)
        pipe = FakePipe(shape)
        data = RunData(pipe, pipe, pipe, tuple(f"c{i}" for i in range(10)), shape, "validation", {})
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        with precision(config.precision):
            model = build_model(config, data, steps_per_epoch=4)
            compile_model(model, config, steps_per_epoch=4)
            model.optimizer.build(model.trainable_variables)  # its slots and schedule are saved too
        x = pipe.read(np.arange(2))
        model.save(out / f"{name}.keras")
        np.save(out / f"{name}.x.npy", x)
        expected[name] = np.asarray(model.predict(x, verbose=0), "float32")
    return expected


def test_every_recipe_checkpoint_loads_after_import_layerkit_alone(tmp_path):
    expected = _save_recipe_models(tmp_path)
    code = (
        "import json, sys\nimport layerkit\nimport keras, numpy as np\n"
        f"out = {str(tmp_path)!r}\nresult = {{}}\n"
        f"for name in {sorted(expected)!r}:\n"
        "    path = f'{out}/{name}.keras'\n"
        "    x = np.load(f'{out}/{name}.x.npy')\n"
        "    plain = keras.saving.load_model(path)\n"
        "    ours = layerkit.load_model(path)\n"
        "    same = all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), ours.get_weights()))\n"
        "    result[name] = {'outputs': np.asarray(plain.predict(x, verbose=0), 'float32').tolist(),\n"
        "                    'same_weights': same, 'optimizer': type(ours.optimizer).__name__}\n"
        "print(json.dumps(result))\n")
    done = _python(code, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for name, want in expected.items():
        np.testing.assert_allclose(np.asarray(loaded[name]["outputs"]), want, rtol=1e-5, atol=1e-6, err_msg=name)
        assert loaded[name]["same_weights"], name
        optimizer = recipes.get(name).optimizer
        expected_type = ("MuonNesterov" if optimizer in ("muon", "decoupled-sgd")
                         else type(keras.optimizers.get(optimizer)).__name__)
        assert loaded[name]["optimizer"] == expected_type, name


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "small.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    return path


def _rewrite(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    change(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return dst


def test_load_model_round_trip(saved):
    assert layerkit.load_model(saved).output_shape == (None, 2)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.keras"))):
        layerkit.load_model(tmp_path / "nope.keras")


def test_not_a_keras_zip_is_named(tmp_path):
    text = tmp_path / "text.keras"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"text\.keras is not a \.keras model file"):
        layerkit.load_model(text)


@pytest.mark.parametrize("layer, named", [
    ({"module": "os", "class_name": "system", "config": {"command": "echo unsafe"}, "registered_name": None},
     "'os.system'"),
    ({"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"},
     "'builtins.eval'"),
    ({"module": "layerkit.augment", "class_name": "Nope", "config": {}, "registered_name": "layerkit>Nope"},
     "'layerkit.augment.Nope'"),
])
def test_a_class_that_is_not_registered_is_refused_by_name(saved, tmp_path, layer, named):
    def change(config):
        config["config"]["layers"][1] = layer

    crafted = _rewrite(saved, tmp_path / "crafted.keras", change)
    with pytest.raises(ValueError, match=re.escape(f"crafted.keras names {named}")):
        layerkit.load_model(crafted)


def test_unsafe_lambda_gives_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "lambda.keras"
    keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda t: t * 2)]).save(path)
    with pytest.raises(ValueError, match=r"Cannot load .*lambda\.keras"):
        layerkit.load_model(path)


def test_a_config_that_expands_past_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    import zipfile

    import layerkit.saving as saving

    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * 5000 + "}")
    monkeypatch.setattr(saving, "MAX_CONFIG_BYTES", 1000)
    with pytest.raises(ValueError, match="expands to 5,002 bytes"):
        saving.load_model(path)


def test_load_weights_gives_what_keras_loads_from_the_checkpoint(tmp_path):
    def model():
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(),
                                keras.layers.Dense(2)])
        net.compile(optimizer="adam", loss="mse")
        return net

    x, y = np.random.default_rng(0).normal(size=(8, 4)), np.random.default_rng(1).normal(size=(8, 2))
    trained = model()
    trained.fit(x, y, epochs=2, verbose=0)
    trained.save(tmp_path / "ckpt.keras")
    ours, theirs = model(), model()
    for net in (ours, theirs):
        net.optimizer.build(net.trainable_variables)
    layerkit.saving.load_weights(ours, tmp_path / "ckpt.keras")
    theirs.load_weights(tmp_path / "ckpt.keras")
    assert int(ours.optimizer.iterations) == 2
    for a, b, c in zip(ours.variables + ours.optimizer.variables, theirs.variables + theirs.optimizer.variables,
                       trained.variables + trained.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_a_keras_file_with_garbage_weights_is_one_clear_error(saved, tmp_path):
    with zipfile.ZipFile(saved) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["model.weights.h5"] = b"not an HDF5 file" * 64
    broken = tmp_path / "garbage.keras"
    with zipfile.ZipFile(broken, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match=r"Cannot load .*garbage\.keras: OSError: .*file signature not found"):
        layerkit.load_model(broken)
