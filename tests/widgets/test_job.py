import os
import subprocess
import sys
import threading
import time
from pathlib import Path

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


# A worker still inside a backward pass when the interpreter exits used to abort the process with
# "terminate called without an active exception" (exit code 134): the worker thread was killed in C++ code.
EXIT_WHILE_RUNNING = """
import time
import torch
from cnnviz_widgets.widgets._job import Job

def steps():
    x = torch.randn(256, 3, 64, 64, requires_grad=True)
    conv = torch.nn.Conv2d(3, 32, 3)
    while True:
        conv(x).square().sum().backward()
        yield 0

job = Job(steps()).start()
while job.count < 1:
    time.sleep(0.01)
print("exiting", job.running)
"""


def test_a_job_still_running_at_exit_is_stopped_and_joined_cleanly():
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", EXIT_WHILE_RUNNING], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.stdout.strip() == "exiting True", out.stderr  # the job really was running at exit
    assert out.returncode == 0 and "terminate called" not in out.stderr, out.stderr
