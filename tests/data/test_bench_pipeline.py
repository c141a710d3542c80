import argparse

from layerkit.bench import BENCHMARKS, pipeline


def test_pipeline_benchmark_runs_and_ends_with_the_ratio(capsys):
    assert BENCHMARKS["pipeline"] == "layerkit.bench.pipeline"
    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    args = parser.parse_args(["sample", "--images", "256", "--batch-size", "64", "--repeats", "1",
                              "--split", "test", "--no-layers"])
    assert pipeline.run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("(a) per-example") for line in lines)
    assert any(line.startswith("(c) decode bound") for line in lines)
    last = lines[-1]
    assert last.startswith("speedup batch-first/per-example: ") and float(last.split()[-1]) > 0


def test_pipeline_benchmark_variants_and_json(capsys):
    import json

    parser = argparse.ArgumentParser()
    pipeline.add_arguments(parser)
    args = parser.parse_args(["sample", "--images", "256", "--batch-size", "64", "--repeats", "2", "--split",
                              "test", "--no-layers", "--variants", "batch-first,cached", "--json"])
    assert pipeline.run(args) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["images_per_s"]) == {"batch-first", "cached"} and len(last["images_per_s"]["cached"]) == 2
    assert len(last["loadavg_1min"]) == 2 and "speedup_per_round" not in last
