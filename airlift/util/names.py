"""The grammars of every name that crosses the gap: commits, digests, refs, repositories, tags.

Both the spec (semi-trusted) and the manifest (hostile until signed) are checked against these, so a
value that could become a path component, a command option or a registry path is refused on read.
"""

from __future__ import annotations

import re

COMMIT = r"^[0-9a-f]{40}$"
HEX64 = r"^[0-9a-f]{64}$"
DIGEST = r"^sha256:[0-9a-f]{64}$"
HF_REPO = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
PLATFORM = r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$"
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
# The OCI distribution spec's repository and tag grammars: no '..', no leading separator, no '/' at
# the ends, so a repository can never climb out of the registry prefix it is pushed under.
OCI_REPOSITORY = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
OCI_TAG = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
REGISTRY_HOST = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
MEDIA_TYPE = r"^[A-Za-z0-9][A-Za-z0-9.+/_-]*$"
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/+-]*$")
_DIGEST = re.compile(DIGEST)


class Digest(str):
    """A content digest as OCI spells it, `sha256:<64 hex>`, with the bare hex the blob store names
    blobs by (`.hex`): one type for both spellings. `Digest(x)` takes either; JSON keeps `sha256:<hex>`.

    Raises:
        ValueError: The value is neither spelling of a sha256 digest.
    """

    __slots__ = ()
    PREFIX = "sha256:"

    def __new__(cls, value: str) -> Digest:
        text = value if value.startswith(cls.PREFIX) else cls.PREFIX + value
        if not _DIGEST.fullmatch(text):  # fullmatch: `$` would also let a final newline through
            raise ValueError(f"{value!r} is not a sha256 digest")
        return super().__new__(cls, text)

    @property
    def hex(self) -> str:
        """The 64 hex digits: a blob's name in the store."""
        return self[len(self.PREFIX):]

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: object) -> object:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(pattern=DIGEST), serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


def ref_name(value: str) -> str:
    """A git ref or hub revision: no leading '-', no '..', no '//', no trailing '/', '.' or '.lock'.

    Raises:
        ValueError: The value is not such a name.
    """
    if not _REF.match(value) or ".." in value or "//" in value or value.endswith(("/", ".lock", ".")):
        raise ValueError(f"{value!r} is not a valid revision or ref name")
    return value


def no_control(value: str, what: str) -> str:
    """`value` unless it holds a control character (a newline in a log or a script is an injection)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value
