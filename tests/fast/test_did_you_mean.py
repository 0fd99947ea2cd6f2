"""An unknown spec or site key close to a known one names it; a key close to nothing stays `unknown key`."""

from __future__ import annotations

import pytest

from airlift.config.site import load_site
from airlift.config.spec import load_spec
from airlift.util.errors import InputError


def _error(loader, path, text: str) -> str:
    """The one-line InputError `loader` raises for `path` written with `text`."""
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        loader(path)
    return str(caught.value)


def test_spec_key_inside_a_tagged_source(tmp_path):
    spec = tmp_path / "airgap.yaml"
    message = _error(load_spec, spec, "name: x\ndatasets:\n  - url: https://example.com/a\n  - url: https://example.com/b\n    nmae: b\n")
    assert message == f"{spec}:5: datasets[1].nmae: unknown key (did you mean 'name'?)"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("name: x\ndataset: []\n", "dataset: unknown key (did you mean 'datasets'?)"),
        ("name: x\nimages: [a/b:c]\njobs:\n  - {name: a, image: a/b:c, command: [c], resources: {gpu_per_node: 1}}\n",
         "jobs[0].resources.gpu_per_node: unknown key (did you mean 'gpus_per_node'?)"),
        ("name: x\nimages:\n  - ref: a/b:c\n    frm: docker\n", "images[0].frm: unknown key (did you mean 'from'?)"),
    ],
    ids=["top-level", "nested-model", "alias"],
)
def test_spec_keys_at_top_level_in_nested_models_and_aliases(tmp_path, text, said):
    assert _error(load_spec, tmp_path / "airgap.yaml", text).endswith(said)


def test_far_key_gets_no_guess(tmp_path):
    spec = tmp_path / "airgap.yaml"
    assert _error(load_spec, spec, "name: x\nmodels:\n  - hf: a/b\n    zzzzzz: 1\n") == f"{spec}:4: models[0].zzzzzz: unknown key"


def test_site_keys_also_through_extends(tmp_path):
    site = tmp_path / "site.yaml"
    assert _error(load_site, site, "registy:\n  url: r:5000\n").endswith("registy: unknown key (did you mean 'registry'?)")
    (tmp_path / "base.yaml").write_text("shared_root: /srv/x\n")
    message = _error(load_site, site, "extends: base.yaml\ns3:\n  bucket: abc\n  endpoint: http://x\n")
    assert message.endswith(":4: s3.endpoint: unknown key (did you mean 'endpoint_url'?)")
