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
