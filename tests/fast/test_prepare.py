"""The core owns the rules the CLI and the flows share: what a command needs before any work (prepare_*),
whether a cached artifact may be reused, which store lends a blob, and what an ingest's --json holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlift.bundle.signing import keygen, sign
from airlift.bundle.store import BlobStore
from airlift.config.spec import LocalPath
from airlift.fetch import kinds
from airlift.fetch import path as path_source
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.fetch.prepare import prepare_build
from airlift.ingest.plan import IngestSummary
from airlift.ingest.prepare import prepare_ingest, trusted_key_paths
from airlift.ingest.s3 import UploadReport
from airlift.ingest.sharedfs import MaterializeReport
from airlift.util.errors import InputError, WorkError
from tests.fast.conftest import build_bundle, hf_model, sha256, url_file

SPEC = "name: prep\ndatasets:\n  - url: https://files.example.invalid/data.tar\n"


# -- prepare_build ------------------------------------------------------------------------------------------
def test_prepare_build_returns_the_validated_spec(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec = prepare_build(tmp_path / "spec.yaml")
    assert spec.name == "prep" and len(spec.datasets) == 1


def test_prepare_build_refuses_a_since_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "old").mkdir()
    with pytest.raises(InputError, match=r"--since .*old: not a bundle \(no manifest.json\)"):
        prepare_build(tmp_path / "spec.yaml", tmp_path / "old")
    build_bundle(tmp_path / "old", [url_file()])
    assert prepare_build(tmp_path / "spec.yaml", tmp_path / "old").name == "prep"


def test_prepare_build_needs_the_ngc_key_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spec.yaml").write_text("name: prep\nmodels:\n  - ngc: nvidia/nemo/tiny:1.0\n")
    for name in ("NGC_API_KEY", "NGC_CLI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(WorkError, match="NGC needs an API key"):
        prepare_build(tmp_path / "spec.yaml")
    monkeypatch.setenv("NGC_API_KEY", "fast-not-a-key")
    assert prepare_build(tmp_path / "spec.yaml").name == "prep"


def test_prepare_build_names_the_file_and_field_of_a_bad_spec(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC.replace("url:", "ulr:"))
    with pytest.raises(InputError, match=r"spec.yaml:3: datasets\[0\]") as caught:
        prepare_build(tmp_path / "spec.yaml")
    assert caught.value.exit_code == 2


# -- prepare_ingest -----------------------------------------------------------------------------------------
def _site(tmp_path: Path, *, keys: list[Path] | None = None) -> Path:
    text = f"shared_root: {tmp_path / 'root'}\n"
    if keys:
        text += "trust:\n  keys: [" + ", ".join(str(k) for k in keys) + "]\n"
    (tmp_path / "site.yaml").write_text(text)
    return tmp_path / "site.yaml"


def test_prepare_ingest_opens_the_manifest_once_for_both_callers(tmp_path: Path) -> None:
    built = build_bundle(tmp_path / "bundle", [hf_model(), url_file()])
    prepared = prepare_ingest(built.root, _site(tmp_path))
    assert prepared.keys == [] and prepared.store is None and str(prepared.site.shared_root) == str(tmp_path / "root")
    assert prepared.opened.sha256 == built.bundle.manifest_sha256()
    assert [a.id for a in prepared.opened.manifest.artifacts] == [a.id for a in built.manifest.artifacts]
    assert prepared.opened.signature == "unsigned"


def test_prepare_ingest_refuses_an_unsigned_bundle_where_the_site_trusts_keys(tmp_path: Path) -> None:
    built = build_bundle(tmp_path / "bundle", [url_file()])
    _, pub = keygen(tmp_path / "site")
    site = _site(tmp_path, keys=[pub])
    with pytest.raises(WorkError, match="not signed"):
        prepare_ingest(built.root, site)
    sign(built.bundle, tmp_path / "site.key")
    prepared = prepare_ingest(built.root, site)
    assert prepared.keys == [str(pub)] and prepared.opened.signature.startswith("valid")


def test_prepare_ingest_refuses_a_missing_key_file_as_input_error(tmp_path: Path) -> None:
    built = build_bundle(tmp_path / "bundle", [url_file()])
    with pytest.raises(InputError, match=r"--pubkey/trust.keys .*nope.pub: no such file"):
        prepare_ingest(built.root, _site(tmp_path), [str(tmp_path / "nope.pub")])


def test_trusted_keys_are_the_command_line_first_then_the_site(tmp_path: Path) -> None:
    _, first = keygen(tmp_path / "first")
    _, second = keygen(tmp_path / "second")
    from airlift.config.site import load_site

    site = load_site(_site(tmp_path, keys=[second]))
    assert trusted_key_paths([str(first)], site) == [str(first), str(second)]
    assert trusted_key_paths(None) == []


# -- the core decides reuse ---------------------------------------------------------------------------------
def _resolved(root: Path, cache: Cache):  # noqa: ANN202 - a Resolved
    return path_source.resolve(LocalPath(path=str(root)), artifact_id="datasets/data", ctx=FetchContext(cache=cache))


def test_reuse_is_refused_once_a_blob_of_the_record_is_gone(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"alpha" * 100)
    cache = Cache(tmp_path / "cache")
    ctx = FetchContext(cache=cache)
    resolved = _resolved(tmp_path / "data", cache)
    assert kinds.reusable(resolved, ctx) is None  # nothing fetched yet
    artifact = kinds.fetch_resolved(resolved, ctx)
    assert kinds.reusable(resolved, ctx) == artifact
    cache.store.blob_path(sha256(b"alpha" * 100)).unlink()
    assert kinds.reusable(resolved, ctx) is None
    assert kinds.fetch_resolved(resolved, ctx) == artifact and cache.store.has(sha256(b"alpha" * 100))  # fetched again


def test_reuse_is_refused_when_the_kind_finds_the_record_unsound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"beta" * 100)
    cache = Cache(tmp_path / "cache")
    ctx = FetchContext(cache=cache)
    resolved = _resolved(tmp_path / "data", cache)
    kinds.fetch_resolved(resolved, ctx)
    kind = kinds._BY_KIND[resolved.kind]
    monkeypatch.setattr(type(kind), "still_sound", lambda self, cached, ctx: False)
    assert kinds.reusable(resolved, ctx) is None


def test_no_task_cache_can_stand_in_for_the_core_rule() -> None:
    """The fetch task has no Prefect cache key and no persisted result: the cache record is the one copy."""
    import ast

    source = (Path(__file__).resolve().parents[2] / "tasks" / "build.py").read_text()
    keywords = {k.arg for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) for k in n.keywords}
    assert "cache_key_fn" not in keywords and "persist_result" not in keywords


# -- lending: one rule for verify and every ingest sink ----------------------------------------------------------
def test_a_blob_a_delta_lacks_is_lent_by_the_store_and_only_then(tmp_path: Path) -> None:
    old = build_bundle(tmp_path / "old", [hf_model(), url_file()])
    delta = build_bundle(tmp_path / "delta", [hf_model(), url_file()], store_only={"files/notes.txt"})
    own, lent = sha256(b"plain notes\n"), sha256(b'{"hidden_size": 8}\n')
    assert delta.bundle.locate_blob(own, old.bundle.store) == (delta.bundle.store.blob_path(own), False)
    assert delta.bundle.locate_blob(lent, old.bundle.store) == (old.bundle.store.blob_path(lent), True)
    assert delta.bundle.locate_blob(lent, None) == (delta.bundle.store.blob_path(lent), False)
    assert delta.bundle.locate_blob(lent, BlobStore(tmp_path / "empty")) == (delta.bundle.store.blob_path(lent), False)


def test_verify_and_the_ingest_sinks_lend_alike(tmp_path: Path) -> None:
    """Both call Bundle.locate_blob (read from the source, not imported: importing the task module starts Prefect)."""
    import ast

    from airlift.bundle.verify import verify_bundle

    for module in (Path(__file__).resolve().parents[2] / "tasks" / "ingest.py", Path(verify_bundle.__code__.co_filename)):
        calls = {n.func.attr for n in ast.walk(ast.parse(module.read_text())) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert "locate_blob" in calls, module
    old = build_bundle(tmp_path / "old", [hf_model(), url_file()])
    delta = build_bundle(tmp_path / "delta", [hf_model(), url_file()], store_only={"files/notes.txt"})
    report = verify_bundle(delta.bundle, store=old.bundle.store)
    assert report.ok and report.blobs_from_store == 3


# -- ingest --json: per-artifact rows ----------------------------------------------------------------------------
def test_ingest_summary_rows_name_artifact_and_sink() -> None:
    reports = [UploadReport(uploaded=2, skipped=1, bytes=30), MaterializeReport("models/a", False, 3, 30, "/root/hf")]
    summary = IngestSummary.of(artifacts=1, reports=reports, labels=["models/a", "models/a"])
    assert (summary.s3_uploaded, summary.s3_skipped, summary.s3_bytes, summary.materialized) == (2, 1, 30, 1)
    assert summary.results == [
        {"artifact": "models/a", "sink": "s3", "uploaded": 2, "skipped": 1, "bytes": 30},
        {"artifact": "models/a", "sink": "shared_root", "artifact_id": "models/a", "skipped": False, "files": 3, "bytes": 30, "location": "/root/hf"},
    ]
    assert IngestSummary.of(artifacts=1, reports=reports).results == []  # without labels, no rows (the totals stand)


# -- read once: the CLI hands what it prepared to the flow it starts ------------------------------------------------
def test_the_flow_takes_what_the_cli_prepared_once_and_only_unchanged(tmp_path: Path) -> None:
    built = build_bundle(tmp_path / "bundle", [url_file()])
    site = _site(tmp_path)
    cli = prepare_ingest(built.root, site, hand_off=True)
    assert prepare_ingest(str(built.root), str(site)) is cli  # the flow's call: same arguments, nothing changed
    assert prepare_ingest(built.root, site) is not cli  # taken once: a second caller reads for itself

    stale = prepare_ingest(built.root, site, hand_off=True)
    manifest = built.bundle.manifest_path
    info = manifest.stat()
    os.utime(manifest, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))  # touched: what was prepared may be stale
    fresh = prepare_ingest(built.root, site)
    assert fresh is not stale and fresh.opened.sha256 == built.bundle.manifest_sha256()
    kept = prepare_ingest(built.root, site, hand_off=True)
    assert prepare_ingest(built.root, site, []) is kept  # no --pubkey: [] and None are the same arguments
    prepare_ingest(built.root, site, hand_off=True)
    with pytest.raises(InputError, match="no such file"):  # other arguments: not handed over, checked afresh
        prepare_ingest(built.root, site, [str(tmp_path / "absent.pub")])


def test_the_build_flow_takes_the_spec_the_cli_loaded(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    cli = prepare_build(tmp_path / "spec.yaml", hand_off=True)
    assert prepare_build(str(tmp_path / "spec.yaml")) is cli
    prepare_build(tmp_path / "spec.yaml", hand_off=True)
    (tmp_path / "spec.yaml").write_text(SPEC.replace("name: prep", "name: prep2"))
    assert prepare_build(tmp_path / "spec.yaml").name == "prep2"  # the file changed: read again
