"""NGC discovery (TAO FTMS's pretrained_models modes) through the SDK-boundary double: an org/team
listing of several models, a names list, a models CSV, `:latest`, and an unknown org."""

from __future__ import annotations

import json

from tests.test_sources import NGC_ENV


def test_plan_pins_every_model_of_a_listing_names_and_csv(ws):
    ws = ws.with_ngc_double()
    spec = ws.write("all.yaml", "name: tao\nmodels:\n  - ngc: nvidia/tao/*\n")
    out = ws.run("plan", str(spec), "--json", extra_env=NGC_ENV).stdout
    row = json.loads(out)["artifacts"][0]
    assert row["id"] == "models/nvidia/tao"
    assert row["reference"] == "pretrained_classification:2.0 pretrained_detection:1.1 pretrained_segformer:3.0", row

    named = ws.write("named.yaml", 'name: tao\nmodels:\n  - ngc: {org_team: nvidia/tao, names: [pretrained_classification, "pretrained_detection:latest", "pretrained_segformer:2.5"]}\n')
    text = ws.run("plan", str(named), extra_env=NGC_ENV).stdout
    pins = [line.strip() for line in text.splitlines() if line.startswith("      ")]
    assert pins == ["pretrained_classification:2.0", "pretrained_detection:1.1", "pretrained_segformer:2.5"], text

    (ws.root / "models.csv").write_text("name,version\npretrained_detection,\npretrained_segformer,3.0\n")
    csv_spec = ws.write("csv.yaml", "name: tao\nmodels:\n  - ngc: {org_team: nvidia/tao, models_csv: models.csv}\n")
    row = json.loads(ws.run("plan", str(csv_spec), "--json", extra_env=NGC_ENV).stdout)["artifacts"][0]
    assert row["reference"] == "pretrained_detection:1.1 pretrained_segformer:3.0"


def test_build_records_concrete_versions_and_each_model_in_its_directory(ws):
    ws = ws.with_ngc_double()
    spec = ws.write("tao.yaml", 'name: tao\nmodels:\n  - ngc: {org_team: nvidia/tao, names: [pretrained_detection, pretrained_segformer]}\n'
                    "  - ngc: nvidia/nemo/tiny-nemo:latest\n")
    ws.run("build", str(spec), "--out", "bundle", extra_env=NGC_ENV)
    artifacts = {a["id"]: a for a in json.loads((ws.root / "bundle" / "manifest.json").read_text())["artifacts"]}
    catalog = artifacts["models/nvidia/tao"]
    assert catalog["kind"] == "ngc-catalog" and catalog["source"]["models"] == {"pretrained_detection": "1.1", "pretrained_segformer": "3.0"}
    assert {f["path"].split("/", 1)[0] for f in catalog["files"]} == {"pretrained_detection", "pretrained_segformer"}
    assert artifacts["models/nvidia/nemo/tiny-nemo"]["source"]["version"] == "2.0", "`:latest` must be recorded as the concrete version"
    ws.run("verify", "bundle")
    ws.run("ingest", "bundle", "--site", str(ws.write("site.yaml", f"shared_root: {ws.root / 'root'}\n")))
    assert (ws.root / "root" / "models" / "nvidia" / "tao" / "pretrained_detection").is_dir()


def test_an_unknown_org_or_model_exits_1_with_one_clear_line(ws):
    ws = ws.with_ngc_double()
    spec = ws.write("nope.yaml", "name: tao\nmodels:\n  - ngc: {org_team: nope/tao}\n")
    proc = ws.run("plan", str(spec), extra_env=NGC_ENV, expect=1)
    err = "\n".join(line for line in proc.stderr.strip().splitlines() if not line.startswith("flow run: "))
    assert "nope/tao" in err and "could not be found" in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    missing = ws.write("missing.yaml", "name: tao\nmodels:\n  - ngc: {org_team: nvidia/tao, names: [not_a_model]}\n")
    err = ws.run("plan", str(missing), extra_env=NGC_ENV, expect=1).stderr
    assert "no model not_a_model under nvidia/tao" in err and "pretrained_detection" in err
