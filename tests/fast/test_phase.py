"""The phase markers kill trials rely on: a stop lands inside the named unit, mid-way, and the log says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from airlift.util import phase
from tests.processes import all_threads_stopped

SCRIPT = textwrap.dedent(
    """
    from airlift.util.phase import progress, under_way
    with under_way("resolve", "models/a"):
        progress()
    for n in range(3):
        with under_way("download", f"models/a: f{n}"):
            for done in range(0, 5):
                progress(done=done, total=4)  # 0 and 4 are not mid-file: never a stop point
    print("finished", flush=True)
    """
)


def test_a_stop_lands_mid_unit_at_the_nth_point_and_the_log_shows_it(tmp_path):
    log = tmp_path / "phases.log"
    env = {**os.environ, phase.LOG_ENV: str(log), phase.STOP_ENV: "download:5"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not all_threads_stopped(proc.pid):
        assert proc.poll() is None, "the process finished without stopping"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped, open_units = phase.open_at_stop(log.read_text())
    assert stopped == "download"
    # points 1..3 are in f0 (done 1, 2, 3), so the 5th is f1 at done=2
    assert open_units == [("download", "models/a:_f1")]
    assert "stop download" in log.read_text() and "2/4" in log.read_text()
    assert "finished" not in proc.stdout.read()


def test_without_the_environment_nothing_is_logged_or_stopped(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (phase.LOG_ENV, phase.STOP_ENV)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.stdout.strip() == "finished"
    assert list(tmp_path.iterdir()) == []


def test_the_log_parser_pairs_starts_and_ends_per_thread():
    log = "\n".join([
        "start copy 7 1 aaa", "start copy 7 2 bbb", "end copy 7 1 aaa", "start copy 7 1 ccc", "stop copy 7 1 ccc 4194304/10000000",
    ])
    assert phase.open_at_stop(log) == ("copy", [("copy", "bbb"), ("copy", "ccc")])
    assert phase.open_at_stop("start assemble 1 1 b\nend assemble 1 1 b\n") == (None, [])


def test_an_unwritable_log_and_an_unknown_total_never_disturb_the_work(tmp_path):
    script = textwrap.dedent(
        """
        from airlift.util.phase import progress, under_way
        with under_way("download", "models/a: f"):
            progress(done=10, total=None)  # a body of unknown length: no proof it is unfinished, no stop
        try:
            with under_way("copy", "blob"):
                raise KeyError("the real failure")
        except KeyError as exc:
            print("raised", exc, flush=True)
        """
    )
    env = {**os.environ, phase.LOG_ENV: str(tmp_path / "missing-dir" / "log"), phase.STOP_ENV: "download:1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "raised 'the real failure'"
