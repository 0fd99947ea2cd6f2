"""Settings are read in one model; errors carry their artifact as an attribute; a registry that
answers a manifest PUT with another digest fails the push, naming both."""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import pytest

from airlift.bundle.manifest import parse_artifact
from airlift.config.site import RegistryTarget
from airlift.fetch import ngc
from airlift.fetch.base import FetchContext
from airlift.fetch.cache import Cache
from airlift.ingest import registry as registry_sink
from airlift.oci.client import is_plain_http
from airlift.util.errors import InputError, IntegrityError, TransientError, WorkError, describe
from airlift.util.net import with_transient_retries
from airlift.util.settings import settings

CORE = Path(__file__).resolve().parents[2] / "airlift"


def test_the_core_reads_the_environment_only_in_the_settings_module():
    readers = sorted(
        path.relative_to(CORE).as_posix() for path in CORE.rglob("*.py")
        if path.relative_to(CORE).parts[0] not in {"cli", "testing"}
        and re.search(r"os\.environ|getenv", path.read_text())
    )
    assert readers == ["util/settings.py"]


def test_settings_parse_sizes_lists_and_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRLIFT_S3_PART_SIZE", "8MiB")
    monkeypatch.setenv("AIRLIFT_MAX_PER_HOST", "3")
    monkeypatch.setenv("AIRLIFT_INSECURE_REGISTRIES", " mirror.lan:5000, ,other ")
    monkeypatch.setenv("HF_TOKEN", "hf_settings_secret")
    monkeypatch.setenv("AIRLIFT_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("AIRLIFT_HOME", str(tmp_path / "h"))
    read = settings()
    assert (read.s3_part_size, read.max_per_host) == (8 << 20, 3)
    assert read.insecure_hosts == {"mirror.lan:5000", "other"}
    assert read.hf_token is not None and read.hf_token.get_secret_value() == "hf_settings_secret"
    assert "hf_settings_secret" not in repr(read)
    assert Cache().root == tmp_path / "c" and read.home_dir == tmp_path / "h"
    assert FetchContext(cache=Cache()).plain_http("mirror.lan:5000") and not FetchContext(cache=Cache()).plain_http("x:1")


def test_a_bad_setting_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("AIRLIFT_MAX_PER_HOST", "0")
    with pytest.raises(InputError, match=r"^AIRLIFT_MAX_PER_HOST: ") as caught:
        settings()
    assert "\n" not in str(caught.value)


def test_insecure_registries_apply_only_where_the_caller_says(monkeypatch):
    # Inside the gap the site's `registry.insecure` alone decides: the variable no longer leaks in there.
    monkeypatch.setenv("AIRLIFT_INSECURE_REGISTRIES", "mirror.lan:5000")
    assert not is_plain_http("mirror.lan:5000")
    assert is_plain_http("mirror.lan:5000", insecure=True) and is_plain_http("127.0.0.1:5000")


def test_the_ngc_client_is_an_injected_factory(monkeypatch):
    calls: list[dict] = []

    class Double:
        def configure(self, **kwargs):
            calls.append(kwargs)

    monkeypatch.setenv("NGC_API_KEY", "nvapi-injected")
    monkeypatch.setenv("AIRLIFT_NGC_CLIENT", "os:getcwd")  # no longer a way to choose the code that runs
    monkeypatch.setattr(ngc, "client_factory", Double)
    assert isinstance(ngc.ngc_client("nvidia", None), Double)
    assert calls == [{"api_key": "nvapi-injected", "org_name": "nvidia", "team_name": None}]


def test_errors_carry_the_artifact_once():
    error = WorkError("ref v9 not found", artifact_id="repos/tool")
    assert str(error) == "repos/tool: ref v9 not found" and error.message == "ref v9 not found"
    assert str(error.about("repos/other")) == "repos/tool: ref v9 not found"  # already named: unchanged
    assert str(WorkError("no objects").about("files/run7")) == "files/run7: no objects"
    assert describe(ValueError("boom"), "wheels") == "wheels: boom"
    assert describe(error, "repos/tool") == "repos/tool: ref v9 not found"
    again = pickle.loads(pickle.dumps(error))  # a failure carried across processes keeps its artifact
    assert (type(again), again.artifact_id, str(again)) == (WorkError, "repos/tool", str(error))


def test_retries_keep_the_artifact_of_the_last_failure():
    def flaky():
        raise TransientError("HTTP 503 from the hub", artifact_id="models/acme/x/weights.bin")

    with pytest.raises(TransientError) as caught:
        with_transient_retries("models/acme/x", action=flaky, attempts=1)
    assert caught.value.artifact_id == "models/acme/x/weights.bin"
    assert str(caught.value) == "models/acme/x/weights.bin: HTTP 503 from the hub (gave up after 1 attempts)"

    def reset():
        raise ConnectionResetError("reset by peer")

    with pytest.raises(TransientError) as caught:
        with_transient_retries("models/acme/x", action=reset, attempts=1)
    assert str(caught.value) == "models/acme/x: ConnectionResetError: reset by peer (gave up after 1 attempts)"


class _Registry:
    """The calls push_image makes, answering the manifest PUT with another digest than the bytes'."""

    answer: str = "sha256:" + "f" * 64

    def __init__(self, host: str, *, insecure: bool = False) -> None:
        self.host = host

    def head_manifest(self, repository: str, reference: str) -> str | None:
        return None

    def has_blob(self, repository: str, digest: str) -> bool:
        return True

    def put_manifest(self, repository: str, reference: str, *, raw: bytes, media_type: str) -> str:
        return self.answer

    def close(self) -> None:
        pass


def test_a_manifest_put_answered_with_another_digest_fails_the_push(monkeypatch, tmp_path):
    raw = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    digest = hashlib.sha256(raw).hexdigest()
    (tmp_path / digest).write_bytes(raw)
    artifact = parse_artifact({
        "id": "images/acme/app:1", "kind": "image",
        "source": {"ref": "acme/app:1", "from": "registry", "registry": "docker.io", "repository": "acme/app", "tag": "1", "digest": f"sha256:{digest}", "platform": "linux/amd64"},
        "files": [{"path": f"sha256:{digest}", "size": len(raw), "sha256": digest}],
        "image": {"ref": "acme/app:1", "digest": f"sha256:{digest}", "platform": "linux/amd64",
                  "media_type": "application/vnd.oci.image.manifest.v1+json", "size": len(raw),
                  "config": f"sha256:{'c' * 64}", "repository": "acme/app", "tag": "1"},
    })
    monkeypatch.setattr(registry_sink, "RegistryClient", _Registry)
    with pytest.raises(IntegrityError) as caught:
        registry_sink.push_image(artifact, target=RegistryTarget(url="reg.lan:5000/site"), blob_path=lambda d: tmp_path / d, state_dir=tmp_path / "st")
    text = str(caught.value)
    assert caught.value.artifact_id == "images/acme/app:1"
    assert f"sha256:{digest}" in text and _Registry.answer in text and "\n" not in text


def test_materializing_refuses_bytes_that_changed_after_verify(tmp_path):
    from airlift.ingest.sharedfs import materialize
    from tests.fast.conftest import build_bundle, url_file

    built = build_bundle(tmp_path / "b", [url_file("notes.txt", b"the verified bytes\n")])
    artifact = built.manifest.artifacts[0]
    blob = built.bundle.store.blob_path(artifact.files[0].sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"the swapped  bytes\n")  # the same size: only the hash can tell (a size change is refused at open)
    with pytest.raises(IntegrityError, match="expected " + artifact.files[0].sha256) as caught:
        materialize(tmp_path / "root", artifact, blob_path=built.bundle.store.blob_path)
    assert "not placed" in str(caught.value)
    assert not (tmp_path / "root" / artifact.id).exists()
    assert [p.name for p in (tmp_path / "root").rglob("*") if p.is_file()] == []  # no temp file left either


def test_s3_uploads_send_sha256_checksums_the_server_keeps(monkeypatch, tmp_path):
    # moto (the S3 of the service tier) stores the checksums it is sent and answers them on HEAD and
    # ListParts; it does not refuse a wrong one, which AWS, MinIO and SeaweedFS do (BadDigest).
    import base64

    from moto import mock_aws

    from airlift.util import s3 as s3_util

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "airlift-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "airlift-test-secret")
    small, large = b"small blob\n", bytes(range(256)) * (20 << 10) + b"tail"  # two parts: 5 MiB and 4 bytes
    with mock_aws():
        client = s3_util.client(None, "us-east-1")
        client.create_bucket(Bucket="checksums")
        for name, data in (("small", small), ("large", large)):
            (tmp_path / name).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            s3_util.upload_file_resumable(client, path=tmp_path / name, bucket="checksums", key=name, sha256=digest,
                                          part_size=5 << 20, state_dir=tmp_path / "st")
        head = client.head_object(Bucket="checksums", Key="small", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(small).digest()).decode()
        assert s3_util.checksum_sha256(hashlib.sha256(small).hexdigest()) == head["ChecksumSHA256"]
        # A multipart object's checksum is S3's composite: the SHA-256 of the parts' SHA-256s, and their count.
        parts = [hashlib.sha256(large[i:i + (5 << 20)]).digest() for i in range(0, len(large), 5 << 20)]
        composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
        head = client.head_object(Bucket="checksums", Key="large", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] in (composite, f"{composite}-{len(parts)}")


def test_spec_pairs_each_artifact_id_with_its_entry():
    from airlift.config.spec import Spec

    spec = Spec.model_validate({
        "name": "pairs", "models": [{"hf": "acme/m"}], "datasets": [{"url": "https://example.invalid/d.tar", "sha256": "a" * 64}],
        "repos": [{"git": "https://example.invalid/tool.git", "ref": "main"}],
        "wheels": [{"requirements": ["six==1.16.0"]}],
    })
    pairs = spec.artifacts()
    assert [i for i, _ in pairs] == spec.artifact_ids() == ["models/acme/m", "files/d.tar", "repos/tool", "wheels"]
    assert pairs[0][1] is spec.models[0] and pairs[2][1] is spec.repos[0] and pairs[3][1] == tuple(spec.wheels)
    assert [section for section, _ in spec.entries()] == ["models", "datasets", "repos", "wheels"]


def test_one_digest_type_with_both_spellings_and_the_json_unchanged():
    from airlift.bundle.manifest import ImageInfo
    from airlift.util.names import Digest

    hexdigest = "ab" * 32
    assert Digest(hexdigest) == Digest(f"sha256:{hexdigest}") == f"sha256:{hexdigest}"
    assert Digest(hexdigest).hex == hexdigest
    with pytest.raises(ValueError, match="not a sha256 digest"):
        Digest("sha256:../../etc")
    data = {"ref": "acme/app:1", "digest": f"sha256:{hexdigest}", "platform": "linux/amd64",
            "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 1,
            "config": f"sha256:{'c' * 64}", "layers": [f"sha256:{'d' * 64}"], "repository": "acme/app"}
    image = ImageInfo.model_validate(data)
    assert isinstance(image.config, Digest) and image.layers[0].hex == "d" * 64
    dumped = image.model_dump(exclude_none=True)
    assert dumped == data and type(dumped["digest"]) is str  # the manifest's JSON keeps its spelling (contract)
    with pytest.raises(ValueError):
        ImageInfo.model_validate({**data, "config": "c" * 64})  # the manifest spells digests one way only
