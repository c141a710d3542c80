"""Pipeline(device=...): the decoded data set kept on the (JAX) device, batches gathered there."""

import jax
import numpy as np
import pytest

from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import Subset, open_dataset


@pytest.fixture(scope="module")
def source():
    return Subset(open_dataset("sample", "test"), np.arange(300))


def test_device_batches_equal_host_batches_in_the_same_order(source):
    host = Pipeline(source, 64, seed=3, prefetch=0)
    kept = Pipeline(source, 64, seed=3, device=True)
    for step in (0, 3, 4, 9):  # across two epochs
        (hx, hy), (dx, dy) = host.batch_at(step), kept.batch_at(step)
        assert isinstance(dx, jax.Array) and dx.devices() == {jax.local_devices()[0]}
        np.testing.assert_array_equal(np.asarray(dx), hx)
        np.testing.assert_array_equal(dy, hy)
    first = [np.asarray(x) for x, _ in kept]  # the PyDataset interface, prefetch thread included
    assert len(first) == len(host) and all(b.dtype == np.uint8 for b in first)
    np.testing.assert_array_equal(first[1], host.batch_at(1)[0])
    kept.close()


def test_device_needs_the_decoded_cache(source):
    with pytest.raises(ValueError, match="needs the decoded cache: pass cache_decoded=True"):
        Pipeline(source, 64, cache_decoded=False, device=True, prefetch=0)


def test_a_run_with_the_train_split_on_the_device_trains_the_same_weights(tmp_path, capfd):
    from layerkit.training import apply_overrides, get_recipe, train
    from layerkit.saving import load_model

    base = ["epochs=1", "report=false", "train_limit=256", "test_limit=64", "batch_size=32"]
    weights = []
    for choice in ("no", "yes"):
        config = apply_overrides(get_recipe("sample", smoke_run=True), base + [f"data_on_device={choice}"])
        train(config, tmp_path / choice, verbose=0)
        kept = "the decoded train split kept on" in capfd.readouterr().err
        assert kept == (choice == "yes")
        weights.append(load_model(tmp_path / choice / "last.keras").get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
