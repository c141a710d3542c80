"""Ctrl-C and SIGTERM during a run: the first stops after the epoch in progress (its
checkpoint is saved), the second ends the process at once.

Stopping at once is safe at any moment because a checkpoint is one atomic unit
(`checkpoints.py`): the last committed epoch stays, and `--resume` continues from it. The
first signal therefore hands both signals back to the operating system's default action,
so the second ends the process even while the main thread is inside a long compilation or
a device step, where a Python handler would only run once that call returns.

Exit status: 130 for a run stopped early at an epoch end (`STOPPED`); a second signal ends
the process by that signal (the shell shows 130 for SIGINT, 143 for SIGTERM).
"""

import os
import signal
import threading

STOPPED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Installs the handlers; `requested` turns True at the first signal."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def install(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _handler(self, signum, frame):
        self.requested = True
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        name = signal.Signals(signum).name
        # os.write, not print: a handler may run in the middle of another write to stderr
        os.write(2, (f"\nlayerkit: {name}: stopping after this epoch (its checkpoint will be saved); "
                     "send it again to stop at once (the last saved epoch stays).\n").encode())

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.restore()
