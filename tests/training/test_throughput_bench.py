"""`layerkit bench throughput`: the harness (`layerkit train` itself) against a bare step on
the same model and batches; bad settings refused before any work."""

import argparse

import numpy as np
import pytest

from layerkit.bench import BENCHMARKS, throughput


def _args(*argv):
    parser = argparse.ArgumentParser()
    throughput.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_registered_and_the_config_is_the_recipes_with_validation_off():
    assert BENCHMARKS["throughput"] == "layerkit.bench.throughput"
    config = throughput.bench_config(_args("--steps", "7", "--epochs", "2", "lr=0.01"))
    assert (config.model, config.train_limit, config.epochs, config.validation, config.lr) == (
        "airbench94", 7 * config.batch_size, 3, 0.0, 0.01)
    assert config.augment == "airbench94"  # the sample recipe's, kept


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--steps", "0"), ("--repeats", "0"),
                                         ("--epochs", "0")])
def test_bad_counts_are_refused_with_the_value(flag, value):
    with pytest.raises(ValueError, match=f"{flag} must be >= .*Received: {value}"):
        throughput.run(_args(flag, value))


def test_the_bare_step_trains_like_fit(tmp_path):
    """One bare step and one `fit` step from the same weights on the same batch agree."""
    import keras

    from layerkit.training import apply_overrides, get_recipe
    from layerkit.training.data import load_data
    from layerkit.training.run import build_model, compile_model

    config = apply_overrides(get_recipe("sample", smoke_run=True), ["augment=none", "validation=0"])
    data = load_data(config)
    model = build_model(config, data)
    compile_model(model, config, 10)
    x, y = data.train[0]
    start = [v.numpy().copy() for v in model.trainable_variables]
    step = throughput.BareStep(model)
    step(x, y)
    bare = [np.asarray(v) for v in step.state[0]]
    model.fit(x, y, batch_size=len(y), epochs=1, verbose=0, shuffle=False)
    fitted = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    moved = max(float(np.abs(a - b).max()) for a, b in zip(fitted, start))
    assert moved > 1e-4
    for a, b in zip(bare, fitted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_tiny_run_prints_both_rates_and_the_ratio(capsys):
    assert throughput.run(_args("--recipe", "wrn-40-2-cifar10", "--data", "sample", "--model", "wrn-10-1",
                                "--batch-size", "16", "--steps", "2", "--epochs", "1",
                                "--repeats", "1", "--precision", "fp32", "--verbose", "0")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rates = [float(line.split("images/s")[0].split()[-1].replace(",", "")) for line in lines[-3:-1]]
    assert all(r > 0 for r in rates)
    assert lines[-1].startswith("harness/bare-step: ")
    assert float(lines[-1].split()[-1]) == pytest.approx(rates[0] / rates[1], abs=2e-3)
