import threading
import time

import pytest

from cnnviz_widgets.widgets._job import Job


def test_runs_steps_off_the_main_thread_and_reports_the_last():
    threads, seen, done = [], [], []

    def steps():
        for i in range(5):
            threads.append(threading.current_thread())
            yield i

    job = Job(steps(), on_step=seen.append, on_done=done.append, interval=0).start()
    assert job.join(5)
    assert threading.main_thread() not in threads
    assert seen == [0, 1, 2, 3, 4]
    assert done == [4] and job.count == 5 and not job.stopped


def test_stop_takes_effect_before_the_next_step_and_closes_the_generator():
    closed = threading.Event()

    def steps():
        try:
            i = 0
            while True:
                time.sleep(0.01)
                yield i
                i += 1
        finally:
            closed.set()  # where hooks are removed and the model restored

    done = []
    job = Job(steps(), on_done=done.append).start()
    time.sleep(0.1)
    t0 = time.monotonic()
    job.stop()
    assert job.join(1.0)
    assert time.monotonic() - t0 < 1.0
    assert job.stopped and closed.is_set() and done == [job.last] and job.last is not None


def test_errors_are_reported_and_what_was_made_is_kept():
    errors, done = [], []

    def steps():
        yield "frame 0"
        yield "frame 1"
        raise ValueError("NaN in the image")

    job = Job(steps(), on_error=errors.append, on_done=done.append).start()
    assert job.join(5)
    assert isinstance(errors[0], ValueError) and job.error is errors[0]
    assert job.last == "frame 1" and done == []


def test_on_step_is_throttled():
    seen = []
    job = Job(iter(range(10_000)), on_step=seen.append, interval=10).start()
    assert job.join(5)
    assert seen == [0, 9999]  # first step, then the final one
