"""Stops that stop: the first SIGINT ends the run at the epoch's end (exit 130), the first
SIGTERM at the next step boundary after a step checkpoint (exit 143), the second at once, even
during start-up; the last checkpoint stays intact either way."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from layerkit.training.checkpoints import read_state

OVERRIDES = ["epochs=200", "train_limit=256", "test_limit=32", "batch_size=32", "report=false"]


def _start(out, overrides=OVERRIDES):
    return subprocess.Popen([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(out),
                             *overrides], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_epoch(proc, out, epochs=1):
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        state = read_state(out)
        if state and state["epochs_completed"] >= epochs:
            return
        time.sleep(0.05)
    pytest.fail(f"no epoch completed: {proc.poll()}")


def test_one_ctrl_c_stops_after_the_epoch_with_status_130(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_epoch(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-3000:]
    assert "stopping after this epoch" in err and "stopped after epoch" in err and "--resume" in err
    done = read_state(out)["epochs_completed"]
    assert 1 <= done < 200 and not (out / "results.json").exists()


def test_sigterm_saves_a_step_checkpoint_and_exits_143_within_seconds(tmp_path):
    """A preemption notice with checkpoint_every off: epochs of 256 steps (and 4 validation
    batches), SIGTERM a moment into the second; the run saves where it stands and exits 143 in
    about a step and a save (the exact resume from that step: test_preempt.py)."""
    out = tmp_path / "run"
    proc = _start(out, ["epochs=200", "train_limit=2048", "test_limit=32", "batch_size=8", "report=false"])
    _wait_for_epoch(proc, out)
    time.sleep(random.Random(0).uniform(0.1, 0.4))
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    seconds = time.monotonic() - sent
    print(f"SIGTERM to exit: {seconds:.2f} s (the run said: {[line for line in err.splitlines() if 'exiting' in line]})")
    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM: saving a step checkpoint at the next step boundary" in err and "after the SIGTERM" in err
    assert f"continue with `layerkit train --resume --out {out}`" in err
    assert seconds < 60  # a hang guard: not the rest of the epoch nor of the 200-epoch run
    state = read_state(out)
    if "SIGTERM: stopped at step" in err:  # the usual case: the signal landed among the training steps
        assert state["step"] > 0 and state["last"] == f"checkpoints/step-{state['epochs_completed'] * 256 + state['step']:08d}.keras"
    else:  # it landed in the epoch's validation or checkpoint: the epoch end stopped it
        assert "stopped after epoch" in err and "step" not in state
    assert not (out / "results.json").exists()


def test_a_second_signal_stops_at_once_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_epoch(proc, out)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the main thread is likely inside a step: its Python handlers wait, the watcher does not
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped at once" in err and f"continue with `layerkit train --resume --out {out}`" in err
    assert time.monotonic() - sent < 60  # not the rest of a 200-epoch run
    assert read_state(out)["epochs_completed"] >= 1  # the committed epoch stays readable


def test_two_signals_during_start_up_end_the_process_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = _start(out)
    time.sleep(4)  # the CLI is importing, loading data or compiling
    proc.send_signal(signal.SIGINT)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, (proc.returncode, err[-2000:])  # never a segfault (-11)


def test_a_signal_after_a_stopped_run_returned_still_stops_at_once(tmp_path):
    """The CLI's shutdown after a stop (restore(stopping=True)): a second signal arriving then ends
    the process with the stop's status, never a KeyboardInterrupt in shutdown code."""
    code = (
        "import os, signal, time\n"
        "from layerkit.training.stop import StopSignals\n"
        "s = StopSignals().install()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "deadline = time.monotonic() + 60\n"
        "while not s.requested and time.monotonic() < deadline: time.sleep(0.01)\n"
        "s.restore(stopping=s.requested)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(60)\n"
        "print('not stopped')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 130, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "stopping after this epoch" in done.stderr and "stopped at once" in done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "not stopped" not in done.stdout


def test_after_a_plain_restore_ctrl_c_is_a_keyboard_interrupt_again(tmp_path):
    """In-process use (a notebook): once the run is over, Ctrl-C behaves as before it."""
    code = (
        "import os, signal, time\n"
        "from layerkit.training.stop import StopSignals\n"
        "s = StopSignals().install()\n"
        "s.restore()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT); time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "interrupted" in done.stdout, (done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("stopping", [True, False])
def test_after_a_stop_the_interpreters_teardown_ignores_further_signals(stopping):
    """CPython's teardown puts the default handlers back after the exit functions: a signal in
    that window killed a stopped CLI (status -2, seen with a warm compilation cache) instead of
    letting it end with 130. After a stop, the last exit function ignores the signals; without a
    stop, nothing changes."""
    code = (
        "import atexit, signal, sys\n"
        "from layerkit.training.stop import StopSignals\n"
        "s = StopSignals().install()\n"
        f"s.restore(stopping={stopping})\n"
        "atexit._run_exitfuncs()\n"
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(stopping)] * 2
