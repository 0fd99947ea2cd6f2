"""The engine's rules, one at a time: what a far side's listing may claim, which artifact a blob is sent
for, what a delta lends, what a source lacking blobs is told, and what `--json` prints for each command."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from airlift.bundle.checked import verify_and_stamp
from airlift.bundle.manifest import Lineage, Manifest, now_iso
from airlift.cli import commands
from airlift.ingest.plan import IngestSummary
from airlift.ingest.s3 import UploadReport
from airlift.transport.base import TransferPlan, carried_blobs, lent_blobs, require_whole
from airlift.transport.engine import transfer
from airlift.transport.local import DirEndpoint
from airlift.transport.ssh import SshOptions, SshPlace, _parse_listing, _stamp
from airlift.util.errors import InputError, WorkError
from tests.fast.conftest import build_bundle, hf_model, path_tree, sha256, url_file

REPO = Path(__file__).resolve().parents[2]
DIGEST = "a" * 64


# -- a far side's `find` output is hostile input: only well-formed lines count ---------------------------------
@pytest.mark.parametrize(
    ("fields", "stamp"),
    [
        (["2049", "131", "10", "1700000000.123456789"], (2049, 131, 10, 1_700_000_000_123_456_789)),
        (["2049", "131", "10", "1700000000.5"], (2049, 131, 10, 1_700_000_000_500_000_000)),
        (["2049", "131", "10", "1700000000"], (2049, 131, 10, 1_700_000_000_000_000_000)),
        (["2049", "131", "10", "1700000000.1234567891234"], (2049, 131, 10, 1_700_000_000_123_456_789)),  # past ns: cut
        (["2049", "131", "-10", "1700000000.1"], None),
        (["2049", "131", "10"], None),
        (["x", "131", "10", "1.0"], None),
        (["2049", "131", "10", "1.0e9"], None),
        (["2049", "131", "10", "-1.0"], None),
        (["2049", "131", "10", "1.0", "extra"], None),
    ],
)
def test_a_stamp_is_read_only_from_well_formed_find_fields(fields: list[str], stamp: tuple | None) -> None:
    assert _stamp(fields) == stamp


def test_a_listing_keeps_blob_names_only_and_honours_its_tag() -> None:
    text = "\n".join([
        f"{DIGEST} 1 2 3 4.5",
        f"{'b' * 64} 1 2 3",  # too few fields
        "../../etc/passwd 1 2 3 4.5",  # not a blob name
        f"{'C' * 64} 1 2 3 4.5",  # upper case is not a digest airlift writes
        f"B {'d' * 64} 9 9 9 9.0",
        f"A {'d' * 64} 9 9 9 9.5",
    ])
    assert _parse_listing(text) == {DIGEST: (1, 2, 3, 4_500_000_000)}
    assert _parse_listing(text, "B") == {"d" * 64: (9, 9, 9, 9_000_000_000)}
    assert _parse_listing(text, "A") == {"d" * 64: (9, 9, 9, 9_500_000_000)}


@pytest.mark.parametrize(
    ("options", "argv"),
    [
        (SshOptions(), ["ssh", "-o", "BatchMode=yes", "-p", "2200"]),
        (SshOptions("/k/id"), ["ssh", "-o", "BatchMode=yes", "-p", "2200", "-i", "/k/id"]),
        (SshOptions(None, ("StrictHostKeyChecking=no",)), ["ssh", "-o", "BatchMode=yes", "-p", "2200", "-o", "StrictHostKeyChecking=no"]),
    ],
)
def test_ssh_options_become_argv(options: SshOptions, argv: list[str]) -> None:
    assert options.ssh_argv(SshPlace.parse("ssh://u@h:2200/p", argument="--to")) == argv


def test_an_ssh_option_without_a_value_is_input_error() -> None:
    with pytest.raises(InputError, match="--ssh-option 'Compression': expected KEY=VALUE"):
        SshOptions(None, ("Compression",)).ssh_argv(SshPlace.parse("ssh://h/p", argument="--to"))


# -- which artifact a blob travels for, what a delta lends, what a source lacks -----------------------------------
def test_a_blob_is_carried_for_the_first_artifact_naming_it_and_only_if_held() -> None:
    shared = b"shared bytes\n"
    first = hf_model("acme/one", {"a.json": shared, "b.bin": b"one\n"})
    second = path_tree("two", {"same.json": shared, "c.bin": b"two\n"})
    manifest = Manifest(name="m", created=now_iso(), artifacts=[first.artifact(), second.artifact()])
    offered = {sha256(shared): len(shared), sha256(b"two\n"): 4}
    assert carried_blobs(manifest, offered) == {sha256(shared): ("models/acme/one", len(shared)), sha256(b"two\n"): ("files/two", 4)}


def test_only_a_delta_lends_what_it_does_not_carry() -> None:
    artifacts = [url_file().artifact(), url_file("b.txt", b"b\n").artifact()]
    whole = Manifest(name="m", created=now_iso(), artifacts=artifacts)
    carried = {sha256(b"plain notes\n")}
    assert lent_blobs(whole, carried) == frozenset()
    delta = Manifest(name="m", created=now_iso(), artifacts=artifacts, since=Lineage(manifest_sha256=DIGEST, name="m", created=now_iso()))
    assert lent_blobs(delta, carried) == {sha256(b"b\n")}


def test_a_source_lacking_blobs_is_told_which_files_at_most_five() -> None:
    drafts = [url_file(f"f{i}.txt", f"{i}\n".encode()) for i in range(7)]
    manifest = Manifest(name="m", created=now_iso(), artifacts=[d.artifact() for d in drafts])
    with pytest.raises(WorkError) as caught:
        require_whole(manifest, set(), where="SRC")
    text = str(caught.value)
    assert text.startswith("SRC: 7 files missing") and text.count("files/f") == 5
    require_whole(manifest, manifest.all_blobs(), where="SRC")  # whole: nothing raised


def test_missing_blobs_are_grouped_per_artifact_in_a_stable_order(tmp_path: Path) -> None:
    built = build_bundle(tmp_path / "src", [hf_model(), url_file(), path_tree()])
    plan = TransferPlan(built.manifest, built.bundle.manifest_bytes(), {}, 0)
    plan.missing = carried_blobs(built.manifest, DirEndpoint(str(built.root)).list_blobs())
    groups = plan.by_artifact()
    assert list(groups) == sorted(groups, key=lambda a: min(groups[a])) and sum(map(len, groups.values())) == 6
    assert plan.bytes_of(groups["files/notes.txt"]) == len(b"plain notes\n")
    result = plan.result("dest", sent=groups["files/notes.txt"])
    assert (result.blobs_sent, result.bytes_sent, result.artifacts) == (1, 12, {"files/notes.txt": {"blobs_sent": 1, "bytes_sent": 12}})


def test_the_flow_has_one_path_for_every_kind() -> None:
    """flows/transfer.py names no endpoint kind: plan, a send per artifact, finish, whatever the pair."""
    tree = ast.parse((REPO / "flows" / "transfer.py").read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"DirEndpoint", "S3Endpoint", "SshEndpoint", "kind"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.If)], "no branch on the kind of endpoint"


# -- --json (contract v1.1): one object naming the command, with counts, bytes and per-artifact rows -----------------
def _printed(capsys: pytest.CaptureFixture[str], command: str, body: dict) -> dict:
    commands._print_json(command, body)
    return json.loads(capsys.readouterr().out)


def test_transfer_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_bundle(tmp_path / "src", [hf_model(), url_file()])
    result = transfer(DirEndpoint(str(built.root)), DirEndpoint(str(tmp_path / "dest")))
    out = _printed(capsys, "transfer", result.model_dump(mode="json") | {"ok": True})
    assert (out["schema"], out["command"], out["ok"]) == ("airlift/v1.1", "transfer", True)
    assert (out["blobs_sent"], out["blobs_present"]) == (4, 0) and out["artifacts"]["files/notes.txt"] == {"blobs_sent": 1, "bytes_sent": 12}


def test_verify_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_bundle(tmp_path / "b", [hf_model(), url_file()])
    report = verify_and_stamp(built.root)
    out = _printed(capsys, "verify", report.model_dump(mode="json") | {"ok": report.ok})
    assert (out["command"], out["ok"], out["blobs_checked"], out["problems"]) == ("verify", True, 4, [])
    assert {a["id"] for a in out["artifacts"]} == {"models/acme/tiny", "files/notes.txt"}
    assert out["bytes_checked"] == sum(f.size for a in built.manifest.artifacts for f in a.files)


def test_ingest_json(capsys: pytest.CaptureFixture[str]) -> None:
    summary = IngestSummary.of(artifacts=1, reports=[UploadReport(uploaded=3, bytes=300)], labels=["models/x"])
    out = _printed(capsys, "ingest", summary.model_dump(mode="json") | {"ok": True})
    assert (out["command"], out["s3_uploaded"], out["s3_bytes"]) == ("ingest", 3, 300)
    assert out["results"] == [{"artifact": "models/x", "sink": "s3", "uploaded": 3, "skipped": 0, "bytes": 300}]


@pytest.mark.parametrize("command", ["verify", "transfer", "ingest"])
def test_the_three_commands_take_json(command: str) -> None:
    from airlift.cli.main import build_parser

    argv = {"verify": ["verify", "b"], "transfer": ["transfer", "a", "--to", "b"], "ingest": ["ingest", "b", "--site", "s"]}[command]
    assert build_parser().parse_args([*argv, "--json"]).json is True
    assert build_parser().parse_args(argv).json is False
