"""`layerkit speedrun cifar10 --smoke`: the whole speed run, seconds-long, through the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layerkit.training.speedrun import SpeedrunConfig, build_net, smoke_config, validate


def test_smoke_speedrun_reports_runs_accuracy_and_times(tmp_path):
    out = tmp_path / "speedrun.json"
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "speedrun", "cifar10", "--smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    runs = summary["runs"]
    assert len(runs) == 2 and summary["train_images"] == 512 and summary["test_images"] == 256
    accs = [r["test_accuracy"] for r in runs]
    assert all(0 <= a <= 1 and a * 256 == round(a * 256) for a in accs)  # whole images counted
    assert summary["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert summary["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert all(np.isfinite(r["final_loss"]) and r["train_seconds"] > 0 for r in runs)
    assert summary["compile_seconds"] > 0 and summary["config"]["precision"] == "bf16"
    assert "compilation" in proc.stdout and "(2 runs)" in proc.stdout
    assert runs[0]["final_loss"] != runs[1]["final_loss"]  # each run starts from new weights


def test_net_takes_uint8_and_gives_float32_logits():
    model = build_net(smoke_config(SpeedrunConfig()))
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    logits = np.asarray(model(x, training=True))
    assert logits.shape == (4, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()
    assert model.get_layer("flip") is not None and model.get_layer("translate") is not None


def test_bad_settings_are_refused_with_what_was_received():
    with pytest.raises(ValueError, match="batch_size=0"):
        validate(SpeedrunConfig(batch_size=0))
    with pytest.raises(ValueError, match=r"widths.*\(8, 16\)"):
        validate(SpeedrunConfig(widths=(8, 16)))
    with pytest.raises(ValueError, match="precision must be bf16 or fp32. Received: 'fp16'"):
        validate(SpeedrunConfig(precision="fp16"))
