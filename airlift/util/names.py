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
