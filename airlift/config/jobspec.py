"""The spec's jobs (`jobs:`) and the strict base every spec model shares."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from airlift.config.mounts import Mount, output_path

NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"
ENV_KEY_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Strict(BaseModel):
    """Spec models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(Strict):
    """What a job asks the scheduler for."""

    nodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=0, ge=0)
    cpus_per_task: int | None = Field(default=None, ge=1)
    # Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
    time: str | None = Field(default=None, pattern=r"^(\d+-\d{1,2}(:\d{2}){0,2}|\d+(:\d{2}){0,2})$")
    mem: str | None = Field(default=None, pattern=r"^\d+[KMGT]?$", description="Slurm --mem, e.g. 64G")


class Job(Strict):
    """One job to run inside the gap, in an image of the spec, reading artifacts of the spec."""

    name: str = Field(pattern=NAME_RE)
    image: str
    command: list[str] = Field(min_length=1)
    uses: list[str] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    env: dict[Annotated[str, Field(pattern=ENV_KEY_RE)], str] = Field(default_factory=dict)
    mounts: list[Mount] = Field(default_factory=list, description="read-only artifacts inside the job (v1.1)")
    outputs: list[Annotated[str, AfterValidator(output_path)]] = Field(default_factory=list, description="dirs under $AIRLIFT_OUTPUT")

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        for item in value:
            if "\x00" in item:
                raise ValueError("command arguments must not contain NUL bytes")
        return value

    @field_validator("env")
    @classmethod
    def _env_values(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if "\x00" in item or "\n" in item:
                raise ValueError(f"env {key}: values must be one line without NUL bytes")
        return value
