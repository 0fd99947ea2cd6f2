"""(v1.1) NGC discovery in the spec (TAO FTMS's pretrained_models modes).

`ngc:` takes, besides `org/[team/]name[:version]`:
- `org/team/*`: every model of that org/team;
- `{org_team: org/team, names: [name, name:version, ...]}`: those models;
- `{org_team: org/team, models_csv: path}`: the models named in a CSV's first column (a `name` header
  is skipped; a second column, when present, pins the version).

Each discovery entry is one artifact, `models/<org>/<team>`, holding every model in its own
directory; the build resolves each model to a pinned version (`:latest` or none means the newest),
and the manifest records the concrete versions.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from airlift.util.errors import InputError

PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
NGC_TARGET = rf"^{PART}(/{PART}){{1,2}}(:{PART})?$|^{PART}/{PART}/\*$"
MODEL_NAME = rf"^{PART}(:{PART})?$"


class NgcCatalog(BaseModel):
    """Several models of one NGC org/team: named, listed in a CSV, or (neither) all of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    org_team: str = Field(pattern=rf"^{PART}/{PART}$")
    names: list[str] | None = Field(default=None, min_length=1)
    models_csv: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_list(self) -> NgcCatalog:
        if self.names is not None and self.models_csv is not None:
            raise ValueError("give names or models_csv, not both")
        import re

        for name in self.names or []:
            if not re.match(MODEL_NAME, name):
                raise ValueError(f"names: {name!r} is not an NGC model name (name or name:version)")
        return self

    def wanted(self) -> list[str] | None:
        """The models asked for (`name` or `name:version`), or None for every model of the org/team."""
        if self.names is not None:
            return list(self.names)
        if self.models_csv is None:
            return None
        import re

        path = Path(self.models_csv)
        try:
            rows = list(csv.reader(path.read_text().splitlines()[:10_000]))
        except OSError as exc:
            raise InputError(f"ngc.models_csv: {path}: cannot read: {exc.strerror or exc}") from None
        out = []
        for number, row in enumerate(rows, 1):
            cells = [c.strip() for c in row]
            if not cells or not cells[0] or cells[0].startswith("#") or (number == 1 and cells[0].lower() in {"name", "model"}):
                continue
            name = cells[0] + (f":{cells[1]}" if len(cells) > 1 and cells[1] else "")
            if not re.match(MODEL_NAME, name):
                raise InputError(f"{path}:{number}: {name!r} is not an NGC model name")
            out.append(name)
        return out


def ngc_artifact_id(ngc: str | NgcCatalog) -> str:
    """`models/<org>/[<team>/]<name>` for one model; `models/<org>/<team>` for a discovery entry."""
    if isinstance(ngc, NgcCatalog):
        return f"models/{ngc.org_team}"
    return f"models/{ngc.split(':', 1)[0].removesuffix('/*')}"
