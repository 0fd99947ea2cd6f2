"""The process settings: every environment variable the core heeds, read once, in this one model.

Outside `cli/` and `testing/`, no other module of the core reads the environment: code that needs a
value takes it as a parameter (`FetchContext`, `Site`, function arguments) whose default comes from
`settings()`. The site profile decides where things go inside the air gap; these decide how this
one process behaves (cache location, parallelism, part sizes, test aids) and carry the credentials
that upstream conventions put in the environment (`HF_TOKEN`, `NGC_API_KEY`), as secrets.

`settings()` parses the environment once per process (and again only if a variable it reads
changes, as tests do with monkeypatch).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from airlift.util.errors import InputError

MIN_PART = 5 << 20  # S3's smallest part (all but the last)
DEFAULT_PART = 64 << 20
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 10**3, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
          "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """What the environment says, validated. Field names drop the `AIRLIFT_` prefix."""

    model_config = SettingsConfigDict(env_prefix="AIRLIFT_", frozen=True, extra="ignore", populate_by_name=True)

    cache: Path | None = None  # AIRLIFT_CACHE: the build cache (default $XDG_CACHE_HOME/airlift)
    home: Path | None = None  # AIRLIFT_HOME: the embedded server's and the far side's state (default $XDG_DATA_HOME/airlift)
    xdg_cache_home: Path | None = Field(default=None, validation_alias=_env("XDG_CACHE_HOME"))
    xdg_data_home: Path | None = Field(default=None, validation_alias=_env("XDG_DATA_HOME"))
    max_per_host: int = Field(default=8, ge=1)  # AIRLIFT_MAX_PER_HOST: parallel requests per upstream host
    s3_part_size: int = DEFAULT_PART  # AIRLIFT_S3_PART_SIZE: bytes, or e.g. 5MiB, 128MB
    # AIRLIFT_INSECURE_REGISTRIES: upstream registries (host[:port], comma-separated) spoken to over plain
    # HTTP when building. Inside the air gap the site's `registry.insecure` decides, and this does not apply.
    insecure_registries: str = ""
    phase_log: str | None = None  # AIRLIFT_PHASE_LOG, AIRLIFT_PHASE_STOP: kill-trial aids (util/phase.py)
    phase_stop: str | None = None
    s3_endpoint_url: str | None = Field(default=None, validation_alias=_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"))
    aws_region: str | None = Field(default=None, validation_alias=_env("AWS_DEFAULT_REGION"))
    docker_host: str | None = Field(default=None, validation_alias=_env("DOCKER_HOST"))
    registry_auth_file: Path | None = Field(default=None, validation_alias=_env("REGISTRY_AUTH_FILE"))
    hf_token: SecretStr | None = Field(default=None, validation_alias=_env("HF_TOKEN"))
    ngc_api_key: SecretStr | None = Field(default=None, validation_alias=_env("NGC_API_KEY", "NGC_CLI_API_KEY"))

    @field_validator("s3_part_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        match = _SIZE_RE.match(value)
        if not match:
            raise ValueError(f"AIRLIFT_S3_PART_SIZE={value!r}: expected a size such as 64MiB or 5242880")
        size = int(match[1]) * _UNITS[(match[2] or "").lower()]
        if size < MIN_PART:
            raise ValueError(f"AIRLIFT_S3_PART_SIZE={value!r}: S3 parts must be at least 5 MiB")
        return size

    @field_validator("hf_token", "ngc_api_key", "cache", "home", "xdg_cache_home", "xdg_data_home",
                     "registry_auth_file", "phase_log", "phase_stop", "docker_host", "s3_endpoint_url", "aws_region", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # `VAR=` means unset, as the shell's `${VAR:-default}` does

    @property
    def cache_dir(self) -> Path:
        """The build cache: $AIRLIFT_CACHE, else $XDG_CACHE_HOME/airlift, else ~/.cache/airlift."""
        return self.cache or (self.xdg_cache_home or Path.home() / ".cache") / "airlift"

    @property
    def home_dir(self) -> Path:
        """airlift's own state: $AIRLIFT_HOME, else $XDG_DATA_HOME/airlift, else ~/.local/share/airlift."""
        return self.home or (self.xdg_data_home or Path.home() / ".local" / "share") / "airlift"

    @property
    def insecure_hosts(self) -> frozenset[str]:
        return frozenset(h.strip() for h in self.insecure_registries.split(",") if h.strip())


def _variables() -> tuple[str, ...]:
    """Every variable the model reads, by its names in the environment."""
    names: list[str] = []
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.extend(alias.choices if isinstance(alias, AliasChoices) else [f"AIRLIFT_{name.upper()}"])
    return tuple(str(n) for n in names)


_VARIABLES = _variables()


def settings() -> Settings:
    """The settings of this process, parsed from the environment on first use.

    Parsed again only when one of the variables the model reads has changed since (a test's
    monkeypatch), so no caller ever sees a stale value and none pays for parsing twice.

    Raises:
        InputError: A variable does not validate (one line naming the variable).
    """
    return _parsed(tuple(os.environ.get(name) for name in _VARIABLES))


@functools.lru_cache(maxsize=4)
def _parsed(_values: tuple[str | None, ...]) -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "environment"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        raise InputError(message if message.startswith("AIRLIFT_") else f"AIRLIFT_{where.upper()}: {message}") from None


def environ_with(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    """A child process's environment: this process's, plus `extra` (None: inherit unchanged)."""
    return None if extra is None else {**os.environ, **extra}


def environ_without(prefix: str) -> dict[str, str]:
    """This process's environment less every variable starting with `prefix` (e.g. GIT_: none may steer an isolated git)."""
    return {key: value for key, value in os.environ.items() if not key.startswith(prefix)}


def inherited(names: tuple[str, ...] | frozenset[str], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables in `names` that this process (or `source`) has set: what a job may inherit."""
    source = os.environ if source is None else source
    return {key: source[key] for key in names if key in source}
