"""tools/device/issue5.sh, the one call a session with the H100 makes, runs here in SMOKE mode:
its speed-run stages are `layerkit train --recipe speedrun-... --runs N`."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_device_script_runs_its_stages_and_reports_a_bad_one(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "WORK": str(tmp_path / "work"), "SKIP_INSTALL": "1",
           "PYTHON": sys.executable, "SMOKE": "1", "JAX_PLATFORMS": "cpu", "STAGES": "short-sgd bogus"}
    proc = subprocess.run(["bash", str(ROOT / "tools/device/issue5.sh")], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]  # the unknown stage
    assert "unknown stage bogus" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["issue5.tar.gz", "stages.log", "summary.txt"]  # <= 8 files
    with tarfile.open(out / "issue5.tar.gz") as tar:
        summary = json.load(tar.extractfile("./speedrun-short-sgd/summary.json"))
        assert "./short-sgd.log" in tar.getnames() and "./speedrun-short-sgd/seed-1/results.json" in tar.getnames()
    assert summary["config"]["model"] == "airbench94" and len(summary["runs"]) == 2
    text = (out / "summary.txt").read_text()
    assert "keras" in text and "=== short-sgd: exit 0" in text and "=== bogus: exit 2" in text
    assert "2 runs of airbench94 on sample: test accuracy" in text  # the result line, readable without unpacking
