"""`python -m tests.ngc_cli ARGS`: the airlift CLI with the NGC SDK double injected.

NGC needs a real account, so the tests that build `ngc:` models run the CLI through this launcher,
which sets `airlift.fetch.ngc.client_factory` to tests/ngc_double.FakeClient: shipped code never
imports a module an environment variable names.
"""

from __future__ import annotations

import sys

from airlift.cli.main import main
from airlift.fetch import ngc
from tests.ngc_double import FakeClient

if __name__ == "__main__":
    ngc.client_factory = FakeClient
    sys.exit(main())
