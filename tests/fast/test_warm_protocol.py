"""The warm runner's client side and wire protocol (airlift/cli/warm.py), without a runner: what it keeps of
an environment, when it does not delegate at all, and what it refuses to read."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from airlift.cli import warm


def test_the_runner_environment_keeps_no_secret():
    env = {
        "PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "PREFECT_HOME": "/p", "PYTHONPATH": "/x",
        "HF_TOKEN": "hf_x", "NGC_API_KEY": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "a",
        "PREFECT_API_KEY": "pk", "PREFECT_API_AUTH_STRING": "u:p", "REGISTRY_PASSWORD": "p", "AWS_SESSION_TOKEN": "t",
        "DOCKER_AUTH_CONFIG": "{}", "GOOGLE_APPLICATION_CREDENTIALS": "/c", "SSH_AUTH_SOCK": "/s", "HF_ENDPOINT": "http://hub",
    }
    assert warm.runner_env(env) == {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "PREFECT_HOME": "/p", "PYTHONPATH": "/x"}


def test_the_runner_key_follows_the_kept_environment_only():
    base = {"PATH": "/usr/bin", "HOME": "/root"}
    assert warm.fingerprint(base) == warm.fingerprint({**base, "HF_TOKEN": "a", "AIRLIFT_CACHE": "/c"})
    assert warm.fingerprint(base) != warm.fingerprint({**base, "PREFECT_API_URL": "http://elsewhere"})


@pytest.mark.parametrize("argv, env", [
    (["inspect", "bundle"], {}),
    (["cache", "info"], {}),
    (["build", "--help"], {}),
    (["--version"], {}),
    (["build", "spec.yaml"], {"AIRLIFT_WARM_RUNNER": "0"}),
    (["build", "spec.yaml"], {"AIRLIFT_WARM_RUNNER": "off"}),
    (["verify", "b"], {"AIRLIFT_PREFECT": "ephemeral"}),
])
def test_commands_that_need_no_flow_or_opt_out_never_reach_a_runner(argv, env, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLIFT_HOME", str(tmp_path / "home"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert warm.delegate(argv) is None
    assert not (tmp_path / "home").exists()  # not even the runner directory was made


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
