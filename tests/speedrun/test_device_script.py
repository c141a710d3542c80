"""tools/device/issue5.sh, the one call a session with the H100 makes, runs here in SMOKE mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_device_script_runs_its_stages_and_reports_a_bad_one(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "SKIP_INSTALL": "1", "PYTHON": sys.executable, "SMOKE": "1",
           "JAX_PLATFORMS": "cpu", "STAGES": "short bogus"}
    proc = subprocess.run(["bash", str(ROOT / "tools/device/issue5.sh")], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]  # the unknown stage
    assert "unknown stage bogus" in proc.stderr
    summary = json.loads((tmp_path / "speedrun-short.json").read_text())
    assert summary["preset"] == "short" and len(summary["runs"]) == 2
    stages = (tmp_path / "stages.log").read_text()
    assert "=== short exit 0" in stages and "keras" in (tmp_path / "machine.txt").read_text()
