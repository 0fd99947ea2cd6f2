"""Model signatures end to end through the CLI: a Hub repo signed with model-signing and a local key.

The Hub stand-in serves the signed repo (its `model.sig` is one more file of the repo); `huggingface_hub`
downloads it, build checks it against the spec's key, and `verify --model-signatures` checks it again
from the bundle alone. A repo whose files do not match its signature fails the build with exit 1.
"""

from __future__ import annotations

import json
import uuid

from tests.modelsign import make_key, sign_files

FILES = {"config.json": b'{"hidden_size": 16}\n', "model.safetensors": b"\x00signed weights" * 512, "README.md": b"# signed\n"}


def test_a_signed_model_is_checked_at_build_and_again_on_the_far_side(ws, hub):
    private, public = make_key(ws.root)
    repo = f"signers/good-{uuid.uuid4().hex[:8]}"
    hub.add_repo("model", repo, files=sign_files(FILES, private))
    spec = ws.write("signed.yaml", f"name: signed\nmodels:\n  - hf: {repo}\n    verify_signature: {{key: {public}}}\n")
    ws.run("build", str(spec), "--out", "bundle")
    manifest = json.loads((ws.root / "bundle" / "manifest.json").read_text())
    [artifact] = manifest["artifacts"]
    assert artifact["signature"]["method"] == "key" and artifact["signature"]["files"] == 3
    public.unlink()  # the far side has only the bundle
    ws.run("transfer", "bundle", "--to", "inside")
    out = ws.run("verify", "inside", "--model-signatures").stdout
    assert out.startswith("OK"), out


def test_a_model_whose_files_do_not_match_its_signature_fails_the_build(ws, hub):
    private, public = make_key(ws.root)
    repo = f"signers/bad-{uuid.uuid4().hex[:8]}"
    signed = sign_files(FILES, private)
    hub.add_repo("model", repo, files=dict(signed, **{"model.safetensors": b"\x00swapped weights" * 512}))
    spec = ws.write("bad.yaml", f"name: bad\nmodels:\n  - hf: {repo}\n    verify_signature: {{key: {public}}}\n")
    proc = ws.run("build", str(spec), "--out", "bundle", expect=1)
    assert f"models/{repo}: model signature model.sig does not match these files: model.safetensors" in proc.stderr, proc.stderr
    assert not (ws.root / "bundle" / "manifest.json").exists()
