"""`--help` stands on its own: every positional and option of every command says what it is and its default
(or that it is required), and every command shows an example. Walks the real parser, so options added
later are held to the same rule."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from airlift.cli.main import _Help, build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "airlift"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = dict(_commands(build_parser()))


def test_every_command_is_walked():
    assert {"airlift plan", "airlift build", "airlift server", "airlift cache prune", "airlift ingest"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_action_has_help_and_its_default(name):
    parser = COMMANDS[name]
    formatter = _Help(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label}: no help text"
        shown = formatter._get_help_string(action)
        if action.default is not argparse.SUPPRESS:
            assert "default" in shown or "(required)" in shown, f"{name} {label}: help does not show its default: {shown!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_an_example(name):
    parser = COMMANDS[name]
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) and name != "airlift cache":
        return
    text = parser.format_help()
    assert "example:" in text and f"\n  {name}" in text, f"{name}: no example line in --help"


def test_defaults_are_rendered():
    text = COMMANDS["airlift serve"].format_help()
    assert "(default: 8808)" in text and "(default: 127.0.0.1)" in text
    assert "(required)" in COMMANDS["airlift build"].format_help()


def test_server_describes_its_actions():
    text = " ".join(COMMANDS["airlift server"].format_help().split())
    for action in ("status (", "start (", "stop ("):
        assert action in text
    assert "--port" in text


def test_plan_help_points_to_the_examples():
    assert "examples/minimal/airgap.yaml" in " ".join(COMMANDS["airlift plan"].format_help().split())


def test_build_without_out_points_to_build_help():
    proc = subprocess.run([sys.executable, "-m", "airlift.cli.main", "build", "x.yaml"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("(see 'airlift build --help')"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_inspect_columns_all_have_headers(tmp_path, capsys):
    from airlift.bundle.layout import Bundle
    from airlift.bundle.manifest import Manifest, now_iso
    from airlift.cli.main import main

    bundle = Bundle(tmp_path / "bundle")
    bundle.store.ensure_dirs()
    bundle.write_manifest(Manifest(name="tiny", created=now_iso(), artifacts=[]))
    assert main(["inspect", str(tmp_path / "bundle")]) == 0
    header = capsys.readouterr().out.splitlines()[1].split()
    assert header[:4] == ["artifact", "kind", "count", "size"] and header[4:6] == ["pinned", "to"]
