"""A job's `mounts` and `outputs` (contract v1.1), kept beside the spec so spec.py stays one reader's size.

A mount's `to` and an output's path reach container options (`-v SRC:DST:ro`, pyxis'
`--container-mounts=SRC:DST:ro`, apptainer's `--bind`), which split on ':' and ',' whatever the shell
quoting; so both are held to plain absolute (mounts) or relative (outputs) paths of safe characters.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What may be mounted: artifacts that have a place under shared_root (images and wheels do not).
MOUNTABLE = ("repos/", "files/", "models/", "datasets/")
_PATH_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")


def _parts(value: str, what: str) -> list[str]:
    parts = value.split("/")
    for part in parts:
        if part in {"", ".", ".."}:
            raise ValueError(f"{what} {value!r} has an empty, '.' or '..' component")
        if not _PATH_PART.match(part):
            raise ValueError(f"{what} {value!r}: each part must be letters, digits, . _ + - (no ':' ',' or spaces)")
    return parts


class Mount(BaseModel):
    """One read-only mount: an artifact of the bundle (`from`) at a path inside the job (`to`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, description="artifact id: repos/<name>, files/<name>, models/..., datasets/...")
    to: str = Field(min_length=2, description="absolute path inside the job")

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        if not value.startswith(MOUNTABLE):
            raise ValueError(f"{value!r}: only {', '.join(p + '...' for p in MOUNTABLE)} artifacts can be mounted")
        _parts(value, "from")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"to {value!r} must be an absolute path")
        _parts(value[1:], "to")
        return value

    @property
    def env_name(self) -> str:
        """The variable that carries the mount's source path when there is no container (runtime `none`)."""
        return "AIRLIFT_MOUNT_" + re.sub(r"[^A-Z0-9]", "_", self.to[1:].upper())


def output_path(value: str) -> str:
    """An `outputs:` entry: a relative directory under $AIRLIFT_OUTPUT (never `..`, never absolute)."""
    if value.startswith("/"):
        raise ValueError(f"output {value!r} must be relative to $AIRLIFT_OUTPUT")
    _parts(value, "output")
    return value


def mount_problems(jobs: list[Any], artifact_ids: set[str]) -> list[tuple[tuple[str | int, ...], str]]:
    """Mounts of ids the spec does not have, and two mounts at one path: (location, problem) pairs."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, job in enumerate(jobs):
        targets: set[str] = set()
        for m_index, mount in enumerate(job.mounts):
            if mount.from_ not in artifact_ids:
                problems.append((("jobs", index, "mounts", m_index, "from"), f"{mount.from_!r} is not an artifact id of this spec"))
            if mount.to in targets:
                problems.append((("jobs", index, "mounts", m_index, "to"), f"{mount.to!r} is mounted twice"))
            targets.add(mount.to)
    return problems
