"""Progress on a real terminal (a pseudo-terminal from `script`): the cursor always comes back (ESC[?25h),
no bar is drawn after the summary, bars show their known total, and they count in MiB as summaries do."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script(1)")

CHILD = """
import sys, time
from airlift_tasks.common import ProgressLog
from airlift.util.units import human
mode = sys.argv[1]
def work():
    progress = ProgressLog("fetch files/big", 40 * 1024 * 1024, every=60)  # no log line or artifact: no run here
    for _ in range(40):
        progress(1024 * 1024)
        time.sleep(0.02)
    if mode == "interrupt":
        raise KeyboardInterrupt
    if mode == "error":
        raise RuntimeError("upstream went away")
try:
    work()
    print(f"SUMMARY built: {human(40 * 1024 * 1024)}", file=sys.stderr, flush=True)
    time.sleep(0.5)  # a live display that was left running would redraw here
except KeyboardInterrupt:
    print("airlift: interrupted", file=sys.stderr)
    sys.exit(130)
except RuntimeError as exc:
    print(f"airlift: error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def _under_a_terminal(tmp_path, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {mode}"
    return subprocess.Popen(["script", "-q", "-e", "-c", command, "/dev/null"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "TERM": "xterm", "COLUMNS": "120", "HOME": str(tmp_path)})


def _outcome(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=90)
    return proc.returncode, out.decode("utf-8", "replace")


def test_the_bar_ends_before_the_summary_and_the_cursor_returns_also_on_ctrl_c(tmp_path):
    # Both children at once: each pays Prefect's import (~10 s on a busy machine), so they share the wait.
    ok, interrupted = _under_a_terminal(tmp_path, "ok"), _under_a_terminal(tmp_path, "interrupt")
    code, out = _outcome(ok)
    assert code == 0, out
    assert "\x1b[?25l" in out, "no live display was drawn: the test did not exercise a terminal"
    summary = out.index("SUMMARY")
    assert out.rfind("\x1b[?25h") < summary and out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l")
    after = out[summary:]
    assert "fetch files/big" not in after and "━" not in after, f"a bar was drawn after the summary: {after!r}"
    bars = out[:summary]
    assert "40.0 MiB" in bars, "the bar does not show its known total in MiB"
    assert not re.search(r"\d MB\b", bars) and "/?" not in bars

    # Ctrl-C (an error leaves through the same atexit path): the cursor comes back all the same.
    code, out = _outcome(interrupted)
    assert code == 130, out
    assert "\x1b[?25l" in out
    assert out.rfind("\x1b[?25h") > out.rfind("\x1b[?25l"), f"the cursor stays hidden: {out[-300:]!r}"


def test_progress_from_worker_threads_makes_one_artifact_in_the_task_context(monkeypatch):
    """Range and file workers report bytes from threads without Prefect's run context: the artifact is made
    in the creating task's context (so it names its task run), once, and then updated."""
    import contextvars
    import threading

    from airlift_tasks import common

    run_id = contextvars.ContextVar("run_id", default=None)
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(common, "create_progress_artifact", lambda **kw: calls.append(("create", run_id.get())) or "artifact-1")
    monkeypatch.setattr(common, "update_progress_artifact", lambda **kw: calls.append(("update", kw["artifact_id"], run_id.get())))

    def in_task() -> common.ProgressLog:
        run_id.set("task-run-7")
        return common.ProgressLog("fetch files/big", 100, every=0)

    progress = contextvars.copy_context().run(in_task)
    workers = [threading.Thread(target=progress, args=(10,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    progress(10)  # a last report after the workers, from a thread with no task context either
    assert calls[0] == ("create", "task-run-7"), calls
    assert all(call[1:] == ("artifact-1", "task-run-7") for call in calls[1:]), calls
    assert [c[0] for c in calls].count("create") == 1
