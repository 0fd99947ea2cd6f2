"""The Prefect UI, seen for real: headless Chromium (Debian's `chromium`, driven by Playwright) against
the session's embedded server, which serves the UI at its root.

- The `build-bundle` deployment's "Custom run" form renders every typed parameter with its description.
- A CLI build prints its run's UI address once (stderr; `--json` stdout stays pure JSON), the API knows
  that run, and its page shows the `bundle-contents` table that matches the bundle's manifest.

The screenshots go to a temp directory, or to `$AIRLIFT_UI_SCREENSHOTS` (the README's `docs/ui/`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN, need
from tests.fixtures import add_model

RUN_URL = re.compile(r"^flow run: (http://127\.0\.0\.1:\d+/runs/flow-run/([0-9a-f-]{36}))$", re.MULTILINE)
TIMEOUT_MS = 30_000


def _api(server, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server['api']}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    target = os.environ.get("AIRLIFT_UI_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("ui-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright", "the Python package is not installed (pip install -e '.[dev]')")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        need("chromium", "Debian's chromium is not installed (scripts/services.sh installs it as root)")
    with sync_playwright() as playwright:
        # Debian's browser, never one Playwright downloads: the machines this runs on have no internet.
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def deployments(prefect_server, tmp_path_factory):
    """`prefect work-pool create` + `prefect deploy --all` from the checkout (no worker: nothing is run here)."""
    home = tmp_path_factory.mktemp("ui-deploy")
    env = {**os.environ, "PREFECT_API_URL": prefect_server["api"], "PREFECT_HOME": prefect_server["home"],
           "AIRLIFT_MIRROR_SPEC": str(home / "mirror.yaml"), "AIRLIFT_MIRROR_BUNDLES": str(home / "mirrors"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    pool = subprocess.run([str(VENV_BIN / "prefect"), "work-pool", "create", "airlift", "--type", "process"], env=env, capture_output=True, text=True, timeout=120)
    assert pool.returncode == 0 or "already exists" in pool.stdout + pool.stderr, pool.stderr
    deploy = subprocess.run([str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    return {d["name"]: d for d in _api(prefect_server, "/deployments/filter", {})}


def _ui(prefect_server) -> str:
    return prefect_server["api"].removesuffix("/api")


def test_the_ui_is_served_and_pointed_at_its_own_api(prefect_server):
    # Unset, Prefect tells the UI its API is on port 4200 whatever --port the server runs on.
    assert _api({"api": _ui(prefect_server)}, "/ui-settings")["api_url"] == prefect_server["api"]


def test_custom_run_form_renders_the_typed_parameters(page, prefect_server, deployments, shots):
    from playwright.sync_api import expect

    schema = deployments["build-bundle"]["parameter_openapi_schema"]
    required = set(schema.get("required", []))
    assert {"spec", "out"} <= required and "since" in schema["properties"]

    page.goto(f"{_ui(prefect_server)}/deployments")
    page.locator("a", has_text=re.compile(r"^build-bundle$")).first.click()
    expect(page).to_have_url(re.compile(f"/deployments/deployment/{deployments['build-bundle']['id']}"))
    page.locator(".run-menu__run-button").click()
    page.get_by_text("Custom run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/run(\?|$)"))

    for name, prop in schema["properties"].items():
        label = f"{name} (Optional)" if name not in required else name
        field = page.locator(".schema-form-property", has=page.locator(".schema-form-property__label", has_text=re.compile(f"^{re.escape(label)}$")))
        expect(field).to_have_count(1)
        expect(field.locator(".schema-form-property__description")).to_have_text(prop["description"])
        if prop.get("type") == "integer":  # typed: a number input holding the signature's default
            expect(field.locator("input[type=number]")).to_have_value(str(prop["default"]))
        elif prop.get("type") == "string":
            expect(field.locator("textarea")).to_be_editable()

    page.locator(".schema-form-property", has=page.get_by_text("spec", exact=True)).locator("textarea").fill("/srv/specs/airgap.yaml")
    page.locator(".schema-form-property", has=page.get_by_text("out", exact=True)).locator("textarea").fill("/srv/bundles/nemotron-sft")
    page.screenshot(path=str(shots / "run-form.png"))


def test_a_cli_build_prints_its_run_url_and_its_page_shows_the_contents_table(ws, hub, page, prefect_server, shots):
    from playwright.sync_api import expect

    add_model(hub, "acme/ui-model", weights_size=64_000, seed=313)
    (ws.root / "notes.txt").write_text("what the run brought across\n")
    spec = ws.write("ui.yaml", f"name: ui\nmodels:\n  - hf: acme/ui-model\ndatasets:\n  - path: {ws.root / 'notes.txt'}\n")
    out = ws.root / "bundle"

    planned = ws.run("plan", str(spec), "--json")
    json.loads(planned.stdout)  # --json stays pure JSON: the run's address goes to stderr
    assert len(RUN_URL.findall(planned.stderr)) == 1, planned.stderr

    built = ws.run("build", str(spec), "--out", str(out))
    found = RUN_URL.findall(built.stderr)
    assert len(found) == 1, built.stderr
    url, run_id = found[0]
    assert url.startswith(_ui(prefect_server) + "/")
    run = _api(prefect_server, f"/flow_runs/{run_id}")
    assert run["state_type"] == "COMPLETED" and run["parameters"]["out"] == str(out)
    assert _api(prefect_server, f"/flows/{run['flow_id']}")["name"] == "build-bundle"
    # As a browser asks for it (the UI answers page navigations, Accept: text/html, with its app).
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=15) as response:
        assert response.status == 200 and "text/html" in response.headers["Content-Type"]

    manifest = json.loads((out / "manifest.json").read_text())
    page.goto(url)
    expect(page.get_by_text(run["name"], exact=True).first).to_be_visible()
    page.get_by_text("Artifacts", exact=True).first.click()
    card = page.locator("a", has=page.locator(".artifact-card__title", has_text=re.compile(r"^bundle-contents$")))
    expect(card).to_have_count(1)
    page.wait_for_load_state("networkidle")  # the run graph settles before the picture
    page.screenshot(path=str(shots / "run-page.png"))

    card.locator(".artifact-card__title").click()
    expect(page).to_have_url(re.compile(r"/artifacts/artifact/"))
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(len(manifest["artifacts"]))
    shown = {cells[0]: cells for cells in ([c.strip() for c in row.locator("td").all_inner_texts()] for row in rows.all())}
    for artifact in manifest["artifacts"]:
        cells = shown[artifact["id"]]
        assert cells[1] == artifact["kind"] and cells[2] in json.dumps(artifact["source"]), cells
        assert int(cells[3]) == len(artifact["files"]) and int(cells[4]) == sum(f["size"] for f in artifact["files"]), cells
    page.screenshot(path=str(shots / "run-artifact.png"))
