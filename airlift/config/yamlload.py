"""Load YAML and turn pydantic validation errors into one line naming the file, line and field."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from airlift.util.errors import InputError


class LocatedYaml:
    """A parsed YAML document that can say on which line a field path sits."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"{where}: invalid YAML: {problem}") from None

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        node = self.node
        line = None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == part:
                        line = key_node.start_mark.line + 1
                        node = value_node
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


def read_located_yaml(path: Path, what: str) -> LocatedYaml:
    """Read and parse a YAML file, remembering where each field is; InputError when it cannot."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None
    return LocatedYaml(Path(path), text)


def format_loc(loc: Sequence[str | int]) -> str:
    """A pydantic error location as `models[0].revision`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _clean_loc(loc: Sequence[str | int]) -> list[str | int]:
    # Discriminated unions add their tag (e.g. 'hf') and pydantic adds '[key]' for dict keys; keep real fields.
    cleaned: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and ":" in part:  # our union tags are "kind:<name>"; no field has a colon
            continue
        cleaned.append(part)
    return cleaned


def _step(annotation: Any, part: str | int) -> Any:
    """The type one location part further in: a model's field, a list's item, a dict's value, a tagged member."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _step(args[0], part)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if isinstance(part, str) and ":" in part:  # a discriminated union's tag names the member
            for member in members:
                if any(getattr(m, "tag", None) == part for m in typing.get_args(member)[1:]):
                    return typing.get_args(member)[0]
            return None
        return _step(members[0], part) if len(members) == 1 else None
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict and isinstance(part, str):
        return args[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    return None


def known_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys the mapping at `loc` (a pydantic error location, tags included) may have."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    while typing.get_origin(annotation) in (typing.Annotated, typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) is typing.Annotated or len(members) == 1:
            annotation = members[0]
        else:
            return []
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return []
    return [field.alias or name for name, field in annotation.model_fields.items()]


def describe_error(error: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    """A pydantic error as a short phrase (`unknown key`, `unknown key (did you mean 'name'?)`, ...)."""
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        loc = list(error.get("loc", ()))
        close = difflib.get_close_matches(str(loc[-1]), known_keys(model, loc[:-1]), n=1) if model and loc else []
        return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def validate_located(model: type[BaseModel], doc: LocatedYaml, *, context: dict[str, Any] | None = None) -> Any:
    """Validate a parsed document as `model`, or raise one InputError naming the file, line and field."""
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise InputError(f"{doc.path}: expected a mapping at the top level")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise input_error_from(exc, [doc], model) from None


def input_error_from(exc: ValidationError, docs: Sequence[LocatedYaml], model: type[BaseModel] | None = None) -> InputError:
    """One line for the first error: `file:line: field: problem`. Later docs (a profile's children) win.

    With `model`, an unknown key close to a known one names it (`did you mean 'name'?`).
    """
    error = exc.errors()[0]
    loc = _clean_loc(error["loc"])
    for doc in reversed(docs):
        line = doc.line_of(loc)
        if line is not None:
            return InputError(f"{doc.path}:{line}: {format_loc(loc)}: {describe_error(error, model)}")
    return InputError(f"{docs[-1].path}: {format_loc(loc)}: {describe_error(error, model)}")
