"""The prefetcher: ``fn(step)`` for the next few steps on one background thread, in step order.

One thread lives across epochs (no per-epoch start or teardown, the cost tf.data iterators
showed); a step asked for that was not prepared is computed in the caller's thread. Steps
behind the one asked for are cancelled.
"""

import threading
from concurrent.futures import ThreadPoolExecutor


class Prefetcher:
    """`threads` > 1 prepares several steps at once (each waiting on a decoding process)."""

    def __init__(self, fn, depth=2, threads=1):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"prefetch must be an integer >= 0. Received: prefetch={depth!r}")
        self.fn = fn
        self.depth = depth
        self.threads = threads
        self._futures = {}
        self._executor = None
        self._lock = threading.Lock()

    def get(self, step):
        """fn(step), then the following `depth` steps scheduled."""
        with self._lock:
            future = self._futures.pop(step, None)
            for old in [s for s in self._futures if s < step]:
                self._futures.pop(old).cancel()
        result = future.result() if future is not None else self.fn(step)
        self._schedule(step + 1)
        return result

    def _schedule(self, step):
        if not self.depth:
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="layerkit-prefetch")
            for s in range(step, step + self.depth):
                if s not in self._futures:
                    self._futures[s] = self._executor.submit(self.fn, s)

    def reset(self):
        """Drop every prepared step (the order changed)."""
        with self._lock:
            for f in self._futures.values():
                f.cancel()
            self._futures.clear()

    def close(self):
        self.reset()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
