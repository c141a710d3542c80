"""Data-parallel (4 CPU devices) and multi-process (2 processes on 127.0.0.1) training give
the weights of one device; bad settings fail fast with a clear message.

Every run is a subprocess (XLA's device count and JAX's distributed runtime are per
process), tiny (`_distributed_worker.py`) and under a timeout.
"""

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from layerkit.saving import load_model

WORKER = Path(__file__).with_name("_distributed_worker.py")
TIMEOUT = 900  # seconds for any one subprocess: a hang guard, generous for a loaded machine
ENV = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
       "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_cpu_multi_thread_eigen=false"}
for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_PORT"):
    ENV.pop(name, None)
for name in [n for n in ENV if n.startswith(("SLURM_", "OMPI_", "KUBERNETES_", "TPU_"))]:
    ENV.pop(name)  # a test machine inside a cluster job must not turn every run multi-process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(out, *overrides):
    return subprocess.Popen([sys.executable, str(WORKER), str(out), *overrides], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc):
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"a training subprocess ran past {TIMEOUT} s:\n{output[-3000:]}")
    assert proc.returncode == 0, output[-3000:]
    return output


def _weights(run_dir):
    model = load_model(run_dir / "last.keras")
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One device, four devices, two processes: started together, awaited together. The one-device
    run feeds batches from the host; the others keep the train split on their first device."""
    root = tmp_path_factory.mktemp("dp")
    port = _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=120", "data_on_device=yes"]
    procs = {
        "one": _start(root / "one", "devices=1"),
        "four": _start(root / "four", "devices=4", "data_on_device=yes"),
        "p0": _start(root / "p0", *multi, "process_id=0"),
        "p1": _start(root / "p1", *multi, "process_id=1"),
    }
    outputs = {name: _finish(proc) for name, proc in procs.items()}
    return root, outputs


def test_four_devices_train_the_weights_of_one(runs):
    root, outputs = runs
    assert "found 4 device(s) (cpu)" in outputs["four"] and "8 per device" in outputs["four"]
    assert "one device" in outputs["one"]
    assert "train split kept on cpu:0" in outputs["four"] and "kept on" not in outputs["one"]
    one, four = _weights(root / "one"), _weights(root / "four")
    assert one.keys() == four.keys()
    for path in one:
        np.testing.assert_allclose(four[path], one[path], rtol=1e-4, atol=1e-5, err_msg=path)
    # 4 steps were taken (128 images / 32), and BatchNorm's moving statistics moved off
    # their initial values: the comparison is between trained states
    assert int(load_model(root / "four" / "last.keras").optimizer.iterations.numpy()) == 4
    mean = next(v for p, v in one.items() if p.endswith("moving_mean"))
    assert np.abs(mean).max() > 1e-3


def test_two_processes_train_the_weights_of_one(runs):
    root, outputs = runs
    assert "process 0 of 2" in outputs["p0"] and "process 1 of 2" in outputs["p1"]
    one, two = _weights(root / "one"), _weights(root / "p0")
    for path in one:
        np.testing.assert_allclose(two[path], one[path], rtol=1e-4, atol=1e-5, err_msg=path)
    # only process 0 writes the record
    assert (root / "p0" / "results.json").is_file() and (root / "p0" / "history.csv").is_file()
    assert not (root / "p1").exists() or not any((root / "p1").iterdir())


def _slurm_port() -> int:
    """A free port where JAX's SLURM detection puts the coordinator: 61440 + job id % 4096."""
    for port in random.Random().sample(range(61440, 65536), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    pytest.fail("no free port in 61440-65535")


def test_processes_launched_by_slurm_need_no_flags_and_train_the_same_run(runs):
    """Two processes started only with what SLURM's srun sets (job id, task count, proc id,
    local id, the step's node list): no coordinator flags; they find each other as JAX's own
    SLURM detection says, train the explicit-flag launch's weights, and run.json says so."""

    root, _ = runs
    port = _slurm_port()
    procs = []
    for i in range(2):
        env = {**ENV, "SLURM_JOB_ID": str(port - 61440), "SLURM_NTASKS": "2", "SLURM_PROCID": str(i),
               "SLURM_LOCALID": str(i), "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_STEP_NUM_NODES": "1"}
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(root / "slurm"), "init_timeout=120",
                                       "data_on_device=yes"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [_finish(p) for p in procs]
    assert f"process 1 of 2: connecting to 127.0.0.1:{port}" in outputs[1], outputs[1][-2000:]
    explicit, slurm = _weights(root / "p0"), _weights(root / "slurm")
    assert explicit.keys() == slurm.keys()
    for path in explicit:
        np.testing.assert_array_equal(explicit[path], slurm[path], err_msg=path)
    launch = json.loads((root / "slurm" / "run.json").read_text())["launches"][-1]
    assert launch["launch"]["from"] == "slurm" and launch["launch"]["processes"] == 2
    assert [r["process_id"] for r in launch["roles"]] == [0, 1]
    assert all(r["pid"] > 0 and r["host"] for r in launch["roles"])


def test_batch_not_divisible_by_the_devices_fails_fast(tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--devices", "4",
                           "--out", str(tmp_path / "run"), "batch_size=18"],
                          env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "batch_size=18" in proc.stderr and "devices=4" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # nothing was started
    assert time.monotonic() - start < 60


def test_a_coordinator_that_never_answers_fails_fast(tmp_path):
    port = _free_port()  # nothing listens there
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke",
                           "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                           "--process-id", "1", "--init-timeout", "3", "--out", str(tmp_path / "run")],
                          env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    seconds = time.monotonic() - start
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert f"waited 3 s for the coordinator 127.0.0.1:{port}" in proc.stderr, proc.stderr[-2000:]
    assert seconds < 30


def test_launch_settings_are_not_the_runs_config():
    from layerkit.training.config import keys
    from layerkit.training.distribution import DistributionError, Launch

    assert not {"devices", "coordinator", "num_processes", "process_id", "init_timeout"} & set(keys())
    env = {"JAX_COORDINATOR_ADDRESS": "h:9", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert Launch(devices=2).resolved(env) == Launch(2, "h:9", 2, 1, 60.0)
    with pytest.raises(DistributionError, match="devices must be >= 0.*-1"):
        Launch(devices=-1).resolved({})
    with pytest.raises(DistributionError, match="init_timeout must be > 0.*0"):
        Launch(init_timeout=0).resolved({})


def test_launch_settings_are_checked_before_anything_starts(tmp_path):
    from layerkit.training.distribution import DistributionError, launch_settings

    assert launch_settings("", 1, 0, environ={}) == ("", 1, 0)
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert launch_settings("", 1, 0, environ=env) == ("10.0.0.1:1234", 4, 3)
    with pytest.raises(DistributionError, match="need a coordinator"):
        launch_settings("", 2, 0, environ={})
    with pytest.raises(DistributionError, match=r"process_id must be in \[0, 2\).*process_id=2"):
        launch_settings("h:1", 2, 2, environ={})
    with pytest.raises(DistributionError, match="HOST:PORT. Received: 'nohost'"):
        launch_settings("nohost", 2, 0, environ={})


def test_a_stop_signal_to_one_process_stops_both_after_the_same_epoch_and_they_resume(tmp_path):
    """SIGINT reaches only process 1; both finish the same epoch, checkpoint (process 0) and
    exit; relaunched with --resume, both complete the run from process 0's checkpoint."""
    import signal

    out, port = tmp_path / "run", _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=120"]
    epochs = 40
    p0 = _start(out, *multi, "process_id=0", f"epochs={epochs}")
    p1 = _start(out, *multi, "process_id=1", f"epochs={epochs}")
    state = out / "state.json"
    deadline = time.monotonic() + TIMEOUT
    while not state.exists() and time.monotonic() < deadline and p0.poll() is None:
        time.sleep(0.05)
    p1.send_signal(signal.SIGINT)
    outputs = [_finish(p0), _finish(p1)]  # both exit 0: neither is left waiting for the other
    done = json.loads(state.read_text())["epochs_completed"]
    assert 1 <= done < epochs, f"the signal landed after {done} epochs"
    assert "another process was asked to stop" in outputs[0] and "stopping after this epoch" in outputs[1]
    assert not (out / "results.json").exists()

    port = _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=120"]
    r0 = _start(out, "--resume", *multi, "process_id=0")
    r1 = _start(out, "--resume", *multi, "process_id=1")
    assert f"resuming {out} after epoch {done} of {epochs}" in _finish(r0)
    _finish(r1)
    assert json.loads(state.read_text())["epochs_completed"] == epochs
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, epochs + 1))  # no epoch lost or repeated
    assert (out / "results.json").is_file()


def test_sigterm_to_one_process_stops_both_at_the_same_step_and_they_resume(tmp_path):
    """A preemption notice (SIGTERM) to process 1 only: JAX's preemption service tells process 0,
    both stop at the same step (process 0 saving a step checkpoint there unless it is an epoch's
    end); relaunched with --resume, both complete the run, every epoch in history.csv once."""
    import ast
    import signal

    out, port = tmp_path / "run", _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=120"]
    epochs = 6  # of 64 steps: the notice most likely lands mid-epoch, and process 0 saves a step checkpoint
    procs = [_start(out, *multi, f"process_id={i}", f"epochs={epochs}", "train_limit=2048") for i in range(2)]
    state = out / "state.json"
    deadline = time.monotonic() + TIMEOUT
    while not state.exists() and time.monotonic() < deadline and procs[0].poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(1).uniform(0.0, 0.3))
    procs[1].send_signal(signal.SIGTERM)
    outputs = [_finish(p) for p in procs]
    results = [ast.literal_eval(o.strip().splitlines()[-1]) for o in outputs]
    assert all(r.get("preempted") for r in results), outputs[0][-2000:]
    print("both processes stopped at (epoch from 0, step):", results[0]["preempted_at"], results[1]["preempted_at"])
    assert results[0]["preempted_at"] == results[1]["preempted_at"]  # one step for both
    assert all("a preemption notice (SIGTERM) reached this run; all 2 processes stop at step" in o for o in outputs)
    assert "layerkit: SIGTERM:" not in outputs[1]  # JAX's preemption service took the signal, not layerkit's handler
    saved = json.loads(state.read_text())
    epoch, step = results[0]["preempted_at"]
    assert (saved["epochs_completed"], saved.get("step", 0)) == (epoch, step)  # process 0 saved where all stopped
    assert saved["epochs_completed"] < epochs and not (out / "results.json").exists()

    port = _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=120"]
    resumed = [_start(out, "--resume", *multi, f"process_id={i}") for i in range(2)]
    for p in resumed:
        _finish(p)
    assert json.loads(state.read_text())["epochs_completed"] == epochs
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, epochs + 1))  # no epoch lost or repeated


@pytest.mark.parametrize("victim", [1, 0])
def test_a_dead_peer_is_named_and_the_survivor_exits_non_zero(tmp_path, victim):
    """SIGKILL one of two processes mid-run: the other says which process stopped responding
    and exits with status 4 within init_timeout, instead of waiting for JAX to abort it."""
    import signal

    out, port = tmp_path / "run", _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=15", "epochs=400"]
    procs = [_start(out, *multi, f"process_id={i}") for i in range(2)]
    deadline = time.monotonic() + TIMEOUT
    while not (out / "state.json").exists() and time.monotonic() < deadline and procs[0].poll() is None:
        time.sleep(0.05)
    procs[victim].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    survivor = procs[1 - victim]
    output, _ = survivor.communicate(timeout=TIMEOUT)
    procs[victim].wait()
    assert survivor.returncode == 4, output[-3000:]
    seconds = time.monotonic() - killed_at
    print(f"survivor exited {seconds:.1f} s after the kill")
    assert f"process {1 - victim} of 2: process {victim}" in output, output[-3000:]
    assert "--resume" in output
    # seen: the failed collective ends the survivor at once (~1-5 s), where the silence rule
    # alone waits init_timeout (15 s) and JAX alone ~100 s, then SIGABRT
    assert "silent for" not in output, output[-3000:]
    assert seconds < 90

    # both relaunched with --resume continue from the last committed checkpoint to the end
    # (the run shortened to two more epochs), each epoch once in the history
    done = json.loads((out / "state.json").read_text())["epochs_completed"]
    assert done >= 1
    port = _free_port()
    multi = [f"coordinator=127.0.0.1:{port}", "num_processes=2", "init_timeout=120", f"epochs={done + 2}"]
    for p in [_start(out, "--resume", *multi, f"process_id={i}") for i in range(2)]:
        _finish(p)
    assert json.loads((out / "state.json").read_text())["epochs_completed"] == done + 2
    assert (out / "results.json").exists()
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, done + 3))  # no epoch lost or repeated
