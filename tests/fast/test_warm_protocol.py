"""The warm runner's client side and wire protocol (airlift/cli/warm.py), without a runner: what it keeps of
an environment, when it does not delegate at all, and what it refuses to read."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from airlift.cli import warm


@pytest.fixture
def short_tmp():
    """A directory with a short path: a Unix socket's path has at most 107 bytes (pytest's can be longer)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="aw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _unconfined(monkeypatch, root: Path) -> None:
    """An environment in which a flow command would go to a runner: whatever the suite runs under
    (ephemeral mode, the opt-out, a container's seccomp profile), so these tests test the same thing."""
    monkeypatch.setenv("AIRLIFT_HOME", str(root / "home"))
    for name in ("AIRLIFT_WARM_RUNNER", "AIRLIFT_PREFECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(warm, "confined", lambda own: False)


def test_the_runner_environment_keeps_no_secret():
    env = {
        "PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "PREFECT_HOME": "/p", "PYTHONPATH": "/x",
        "HF_TOKEN": "hf_x", "NGC_API_KEY": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "a",
        "PREFECT_API_KEY": "pk", "PREFECT_API_AUTH_STRING": "u:p", "REGISTRY_PASSWORD": "p", "AWS_SESSION_TOKEN": "t",
        "DOCKER_AUTH_CONFIG": "{}", "GOOGLE_APPLICATION_CREDENTIALS": "/c", "SSH_AUTH_SOCK": "/s", "HF_ENDPOINT": "http://hub",
        # Prefect settings that carry credentials under names that do not say so: none reach the runner.
        "PREFECT_CLIENT_CUSTOM_HEADERS": '{"Authorization": "Bearer x"}',
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:pw@db/prefect",
        "PREFECT_API_URL": "https://user:tok@prefect.example", "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    assert warm.runner_env(env) == {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "PREFECT_HOME": "/p", "PYTHONPATH": "/x"}


def test_the_runner_key_follows_the_kept_environment_only():
    base = {"PATH": "/usr/bin", "HOME": "/root"}
    assert warm.fingerprint(base) == warm.fingerprint({**base, "HF_TOKEN": "a", "AIRLIFT_CACHE": "/c", "PREFECT_API_URL": "http://x"})
    # What the interpreter, OpenSSL and Prefect's import read before any command arrives: another runner.
    for changed in ({"PATH": "/opt/bin"}, {"SSL_CERT_FILE": "/etc/site-ca.pem"}, {"PREFECT_HOME": "/p"}, {"LD_PRELOAD": "/x.so"}):
        assert warm.fingerprint(base) != warm.fingerprint({**base, **changed}), changed


@pytest.mark.parametrize("argv, env", [
    (["inspect", "bundle"], {}),
    (["cache", "info"], {}),
    (["build", "--help"], {}),
    (["--version"], {}),
    (["build", "spec.yaml"], {"AIRLIFT_WARM_RUNNER": "0"}),
    (["build", "spec.yaml"], {"AIRLIFT_WARM_RUNNER": "off"}),
    (["verify", "b"], {"AIRLIFT_PREFECT": "ephemeral"}),
])
def test_commands_that_need_no_flow_or_opt_out_never_reach_a_runner(argv, env, short_tmp, monkeypatch):
    _unconfined(monkeypatch, short_tmp)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    starts: list[str] = []
    monkeypatch.setattr(warm, "_start_runner", lambda directory, key, env: starts.append(key))
    assert warm.delegate(argv) is None
    assert not starts and not (short_tmp / "home").exists()  # not even the runner directory was made


def test_a_flow_command_with_no_runner_up_starts_one_and_runs_itself(short_tmp, monkeypatch):
    """The control for the test above: the same call for `build` does reach for a runner."""
    _unconfined(monkeypatch, short_tmp)
    starts: list[str] = []
    monkeypatch.setattr(warm, "_start_runner", lambda directory, key, env: starts.append(key))
    assert warm.delegate(["build", "spec.yaml"]) is None
    assert starts == [warm.fingerprint(dict(os.environ))] and (short_tmp / "home" / "runner").is_dir()


def test_a_runner_directory_that_others_can_enter_or_that_is_a_link_is_not_used(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    assert not warm.private_dir(open_dir, create=False)
    private = tmp_path / "private"
    assert warm.private_dir(private, create=True) and (private.stat().st_mode & 0o777) == 0o700
    link = tmp_path / "link"
    link.symlink_to(private)
    assert not warm.private_dir(link, create=False)


def test_a_message_over_the_stated_maximum_is_refused_before_it_is_read():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(struct.pack("!I", warm.MAX_REQUEST + 1) + b"{")
        with pytest.raises(ValueError, match="bytes"):
            warm.recv_message(ours)


def test_messages_round_trip_with_descriptors_and_end_of_stream_is_none(tmp_path):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            warm.send_message(theirs, {"argv": ["verify", "x" * 100_000]}, [fd])
        finally:
            os.close(fd)
        message, fds = warm.recv_message(ours, maxfds=4)
        assert message == {"argv": ["verify", "x" * 100_000]} and len(fds) == 1
        assert os.path.samestat(os.fstat(fds[0]), os.stat(tmp_path))
        os.close(fds[0])
        theirs.shutdown(socket.SHUT_WR)
        assert warm.recv_message(ours) == (None, [])


def test_a_reply_never_swallows_the_one_queued_behind_it():
    """A fast command's worker sends its pid and the runner its status at once: both must be read."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        warm.send_message(theirs, {"pid": 123})
        warm.send_message(theirs, {"status": 3})
        assert warm.recv_message(ours)[0] == {"pid": 123}
        assert warm.recv_message(ours)[0] == {"status": 3}
        warm.send_message(theirs, {"argv": ["a"]}, [0])
        warm.send_message(theirs, {"status": 0})
        message, fds = warm.recv_message(ours, maxfds=4)
        assert message == {"argv": ["a"]} and len(fds) == 1
        os.close(fds[0])
        assert warm.recv_message(ours)[0] == {"status": 0}


def test_both_ends_compare_the_same_process_facts():
    """A peer is served (and a runner trusted) only when these match: what a fork carries over."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        pid, uid, facts = warm.peer_facts(ours)
        assert (pid, uid) == (os.getpid(), os.getuid())
        assert facts == warm.process_facts("self")
    names = {fact.split("=", 1)[0] for fact in facts if "=" in fact}
    assert {"net", "mnt", "user", "pid", "time", "root", "cpus", "nice"} <= names
    assert any(fact.startswith("Max open files") or "Max open files" in fact for fact in facts)  # /proc/PID/limits
    assert any(fact.startswith("Seccomp_filters") for fact in facts)


_FAKE_RUNNER = """
import socket, sys
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(1)
listener.settimeout(30)
print("ready", flush=True)
conn, _ = listener.accept()
conn.settimeout(30)
received = b""
try:
    while chunk := conn.recv(65536):
        received += chunk
except OSError:
    pass
print(len(received), flush=True)
"""


def test_a_sandboxed_process_posing_as_the_runner_is_sent_nothing(short_tmp, monkeypatch):
    """The attack: a process in its own user and network namespace (same uid on the files) binds the
    runner's socket name and waits for a client's environment, secrets included, and descriptors."""
    import subprocess
    import sys

    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.fail("unshare -rn is not available: this test needs a user and network namespace")
    _unconfined(monkeypatch, short_tmp)
    monkeypatch.setenv("HF_TOKEN", "hf_victim_secret")
    directory = warm.runner_dir(dict(os.environ))
    assert warm.private_dir(directory, create=True)
    path = directory / f"{warm.fingerprint(dict(os.environ))}.sock"
    fake = subprocess.Popen(["unshare", "-rn", sys.executable, "-c", _FAKE_RUNNER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    starts: list[str] = []
    monkeypatch.setattr(warm, "_start_runner", lambda directory, key, env: starts.append(key))
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        assert warm.delegate(["verify", "bundle"]) is None  # not served there: the caller runs it itself
        assert fake.stdout.readline().strip() == "0"  # and the impostor received not one byte
        assert not starts  # a socket answered: the impostor was seen, and refused, not mistaken for none
    finally:
        fake.kill()
        fake.wait()


@pytest.mark.parametrize("env", [
    {"AIRLIFT_HOME": "/srv/airlift"},
    {"XDG_DATA_HOME": "/srv/xdg"},
    {},
])
def test_the_runner_directory_is_the_settings_home_s(env, monkeypatch):
    """warm.py restates Settings.home_dir's rule (to stay stdlib-only): the two must agree."""
    from airlift.util.settings import Settings

    for name in ("AIRLIFT_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert warm.runner_dir(dict(os.environ)) == Settings().home_dir / "runner"
