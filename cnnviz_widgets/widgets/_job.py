"""The one background-job class: runs a core step iterator off the kernel's main thread.

    job = Job(steps, on_step=show_frame, on_done=finish, on_error=view.show_error)
    job.start(); ...; job.stop()      # stop takes effect before the next step

The worker only calls the given callbacks (which set trait values); it never calls display().
``on_step`` is throttled to at most one call per ``interval`` seconds (the last step always
reaches it), so drawing frames costs the computation almost nothing.
At interpreter exit every running Job is stopped and joined: a worker killed inside torch's C++ code
(a backward pass, say) aborts the process with "terminate called without an active exception".
"""
from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import Callable, Iterable

JOIN_AT_EXIT_S = 30.0      # the longest exit waits for running jobs to finish their current step
_running: "weakref.WeakSet[Job]" = weakref.WeakSet()


class Job:
    def __init__(self, steps: Iterable, on_step: Callable | None = None, on_done: Callable | None = None,
                 on_error: Callable | None = None, interval: float = 0.1, name: str = "cnnviz-job"):
        self._steps = steps
        self._on_step = on_step
        self._on_done = on_done
        self._on_error = on_error
        self.interval = interval
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.last = None        # the latest step seen (kept after a stop or an error)
        self.count = 0          # steps seen
        self.error: BaseException | None = None
        self.stopped = False

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> "Job":
        _running.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True when it has finished."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        shown, shown_count = 0.0, 0
        iterator = iter(self._steps)
        try:
            for step in iterator:
                self.last, self.count = step, self.count + 1
                if self._cancel.is_set():
                    self.stopped = True
                    break
                now = time.monotonic()
                if self._on_step is not None and now - shown >= self.interval:
                    shown, shown_count = now, self.count
                    self._on_step(step)
            else:
                self.stopped = self._cancel.is_set()
        except BaseException as err:  # reported to the view, never raised in a thread nobody watches
            self.error = err
            _close(iterator)
            if self._on_error is not None:
                self._on_error(err)
            return
        _close(iterator)  # a stopped generator runs its finally blocks (hooks removed, model restored)
        if self._on_step is not None and self.count and shown_count != self.count:
            self._on_step(self.last)  # the final frame is always shown
        if self._on_done is not None:
            self._on_done(self.last)


@atexit.register
def _stop_running(timeout: float = JOIN_AT_EXIT_S) -> None:
    """Stop every running Job and wait (up to ``timeout`` in all) for its worker to leave its current step."""
    jobs = [job for job in list(_running) if job.running]
    for job in jobs:
        job.stop()
    deadline = time.monotonic() + timeout
    for job in jobs:
        job.join(max(0.0, deadline - time.monotonic()))


def _close(iterator) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
