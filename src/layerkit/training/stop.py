"""Ctrl-C and SIGTERM during a run: the first Ctrl-C (SIGINT) stops after the epoch in progress
(its checkpoint is saved); the first SIGTERM (a preemption notice) saves a step checkpoint at
the next step boundary and stops (`Preempted`, exit status 143), within about a step and a
save, whatever the epoch length (`checkpoints.StepCheckpoints`). A second signal of either kind
ends the process at once.

Stopping at once is safe at any moment because a checkpoint is one atomic unit
(`checkpoints.py`): the last committed epoch stays, and `--resume` continues from it.

Signals are counted by a watcher thread reading Python's signal wake-up pipe, one byte per
delivered signal, not by a Python handler: such a handler runs only when the main thread
returns from the C call it is in (a compilation, a device step), and two signals that
arrive meanwhile would count as one. So the second signal ends the process even while the
main thread is busy.

Exit status: 130 for a run stopped early by SIGINT, at an epoch end or at once; 143 (128 + 15)
for one stopped by SIGTERM, at a step boundary, an epoch end or at once.

With several processes, JAX's preemption service takes SIGTERM (its handler replaces this
one when the distributed runtime starts) and the processes agree on the step to stop at
(`checkpoints.StepCheckpoints`); a SIGINT reaching any of them stops all after the same epoch
(`callbacks.GracefulStop`). See docs/scale.md.

A run also stops when it diverges (`DivergedError`, exit status 5): a loss that is not finite
(seen inside the compiled step by `losses.NonFiniteStep`, read at the epoch end: no host sync
per step) or weights that are not finite at an epoch end. That epoch is never saved.
"""

import atexit
import os
import signal
import threading
import time

from layerkit.training.rundir import Worded

STOPPED = 130
PREEMPTED = 128 + signal.SIGTERM  # 143
DIVERGED = 5
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DivergedError(Worded, RuntimeError):
    """The loss or the weights became non-finite; `epoch` and `step` (from 1; step within the
    epoch, None when unknown) say where. Nothing of that epoch was saved."""

    epoch: int = 0
    step: int | None = None


def diverged(what: str, epoch: int, step) -> DivergedError:
    """The `DivergedError` of a run whose `what` (the loss became nan at ...) happened."""
    err = DivergedError.worded(lambda w: f"training diverged: {what}; nothing of epoch {epoch} was saved (an "
                                         "earlier epoch's checkpoint stays) and results.json says failed. Lower lr, "
                                         "add warmup_epochs or check the data.")
    err.epoch, err.step = epoch, step
    return err


class Preempted(RuntimeError):
    """A SIGTERM stopped the run at a step boundary (`checkpoints.StepCheckpoints`), after a
    step checkpoint was saved there (`saved`; False when the state at that boundary was already
    committed). `epoch` (from 0) and `step` (steps done in it) say where."""

    def __init__(self, epoch: int, step: int, saved: bool):
        super().__init__(f"SIGTERM: stopped at step {step} of epoch {epoch + 1}")
        self.epoch, self.step, self.saved = epoch, step, saved


class StopSignals:
    """Installs the handlers (main thread only; elsewhere it does nothing); `requested` turns
    True at the first signal, and `preempt` too when it is SIGTERM (`received_at`: its
    `time.monotonic()`)."""

    installed = None  # the instance whose handlers are installed, if any

    def __init__(self, hint: str = ""):
        self.requested = False
        self.preempt = False
        self.received_at = None
        self.at_steps = True  # whether a SIGTERM stops at a step boundary (one process) or, like SIGINT, after the epoch
        self.count = 0
        self.hint = hint  # said when a second signal stops at once: how to continue (the CLI sets it)
        self._previous = {}
        self._wakeup = None
        self._pipe = None
        self._ending = False

    def install(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread() or self._pipe is not None:
            return self
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        StopSignals.installed = self
        self._wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, _counted_by_the_watcher)
        # Registered first, so called last of the exit functions (they run in reverse order):
        # after a stop, the interpreter's own teardown follows, during which CPython puts the
        # default handlers back (a signal then would kill the process instead of ending it with
        # the stop's status); ignoring the signals from here on lets it end as it was ending.
        atexit.register(self._quiet_teardown)
        threading.Thread(target=self._watch, args=(read_fd,), name="layerkit-stop-signals", daemon=True).start()
        return self

    def restore(self, stopping: bool = False) -> None:
        """Puts the previous handlers back. With `stopping` (the process ends next, after a stop
        was asked: the CLI), a further signal instead ends it at once with the stop's status, as
        the second signal does during the run, rather than raising KeyboardInterrupt in whatever
        shutdown code then runs."""
        if self._pipe is None:
            return
        self._ending = stopping
        for sig, previous in self._previous.items():
            signal.signal(sig, (lambda signum, frame, hint=self.hint: _stop_at_once(signum, frame, hint))
                          if stopping else previous)
        signal.set_wakeup_fd(self._wakeup if self._wakeup is not None else -1)
        self._previous = {}
        os.close(self._pipe[1])  # the watcher's read returns b"" and it ends
        self._pipe = None
        if StopSignals.installed is self:
            StopSignals.installed = None

    def _quiet_teardown(self) -> None:
        if self._ending and threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    def _watch(self, read_fd):
        try:
            while True:
                data = os.read(read_fd, 64)
                if not data:
                    return
                for signum in data:
                    if signum in SIGNALS:
                        self._received(signum)
        finally:
            os.close(read_fd)

    def _received(self, signum) -> None:
        self.count += 1
        if self.count == 1:
            self.received_at = time.monotonic()
            self.preempt = signum == signal.SIGTERM
            self.requested = True
            name = signal.Signals(signum).name
            what = ("saving a step checkpoint at the next step boundary, then stopping"
                    if self.preempt and self.at_steps else "stopping after this epoch (its checkpoint will be saved)")
            os.write(2, (f"\nlayerkit: {name}: {what}; send it again to stop at once (the last saved "
                         "checkpoint stays).\n").encode())
            return
        _stop_at_once(signum, hint=self.hint)

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.restore()


def _counted_by_the_watcher(signum, frame):
    """The Python-level handler: nothing to do (the watcher thread counts the signals)."""


def _stop_at_once(signum, frame=None, hint=""):
    """Ends the process now: 130 after SIGINT, 128 + the signal's number otherwise. `hint`: how
    to continue, said after the stop."""
    name = signal.Signals(signum).name
    os.write(2, f"\nlayerkit: {name} again: stopped at once; the last saved checkpoint stays"
                f"{f'; {hint}' if hint else ''}.\n".encode())
    os._exit(STOPPED if signum == signal.SIGINT else 128 + signum)


def exit_status(signals: "StopSignals", results: dict) -> int:
    """The exit status of a run a signal stopped (`results`: what `train` returned): 143 after
    SIGTERM (this process's, or JAX's preemption notice in a multi-process run), 130 after SIGINT."""
    return PREEMPTED if signals.preempt or results.get("preempted") else STOPPED
