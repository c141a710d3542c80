"""`layerkit bench throughput`: registered, and bad settings refused before any work."""

import argparse

import pytest

from layerkit.bench import BENCHMARKS, throughput


def _args(*argv):
    parser = argparse.ArgumentParser()
    throughput.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_registered_with_the_issue_defaults():
    assert BENCHMARKS["throughput"] == "layerkit.bench.throughput"
    args = _args()
    assert (args.data, args.model, args.batch_size, args.precision) == ("cifar10", "wrn-16-4", 512, "bf16")


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--steps", "0"), ("--repeats", "0"),
                                         ("--warmup", "-1")])
def test_bad_counts_are_refused_with_the_value(flag, value):
    with pytest.raises(ValueError, match=f"{flag} must be >= .*Received: {value}"):
        throughput.run(_args("sample", flag, value))


def test_a_tiny_run_prints_the_three_rates_and_both_ratios(capsys):
    assert throughput.run(_args("sample", "--model", "wrn-10-1", "--batch-size", "16", "--steps", "2",
                                "--warmup", "1", "--repeats", "1", "--precision", "fp32")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rates = [float(line.split()[-6].replace(",", "")) for line in lines[-5:-2]]
    assert all(r > 0 for r in rates)
    assert lines[-2].startswith("ratio pipeline-on-device/device-resident: ")
    assert lines[-1].startswith("ratio pipeline/device-resident: ")
    assert float(lines[-1].split()[-1]) == pytest.approx(rates[0] / rates[2], abs=2e-3)
