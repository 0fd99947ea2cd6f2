"""Error types, and the one rule for which failures are worth retrying.

Exit codes follow the interface contract: 1 for work that failed, 2 for invalid input.
"""

from __future__ import annotations

import errno


class AirliftError(Exception):
    """Base class: carries the process exit code the CLI should use, and the artifact it is about.

    `artifact_id` is an attribute, not part of the message: `str()` (the one formatter) puts it in
    front, once, so code that adds the artifact on the way up (`about`) never inspects the text.
    """

    exit_code = 1

    def __init__(self, message: str = "", *, artifact_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.artifact_id = artifact_id  # the artifact (or the file within one) the failure is about

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        # Exceptions pickle as type(*args): keep the attributes too (Prefect and Dask carry failures across).
        return (type(self), (self.message,), self.__dict__)

    def __str__(self) -> str:
        return f"{self.artifact_id}: {self.message}" if self.artifact_id else self.message

    def about(self, artifact_id: str) -> AirliftError:
        """This error, naming `artifact_id` unless it already names an artifact (or a file of one)."""
        if self.artifact_id is None:
            self.artifact_id = artifact_id
        return self


def describe(exc: BaseException, artifact_id: str) -> str:
    """One line for a failure of `artifact_id`: airlift's errors name it once, others get it in front."""
    if isinstance(exc, AirliftError):
        return str(exc.about(artifact_id))
    return f"{artifact_id}: {exc}"


class InputError(AirliftError):
    """Invalid spec, site profile, arguments, or a hostile manifest/tar (exit 2)."""

    exit_code = 2


class WorkError(AirliftError):
    """The work failed: a source unreachable after retries, corruption, a failed job (exit 1)."""


class IntegrityError(WorkError):
    """Bytes did not hash to what was promised (a pin, an LFS oid, a blob name)."""


class TransientError(WorkError):
    """A failure that a retry may cure (connection reset, 429, 5xx, short body)."""


_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# A full disk, a file-size limit or a read-only filesystem will not heal on retry.
_RESOURCE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}


class ResourceError(WorkError):
    """The local disk cannot take the bytes (full, over quota, file-size limit, read-only)."""


def resource_error(exc: OSError, where: str) -> ResourceError | None:
    """A ResourceError when `exc` is a full disk, a quota or a read-only filesystem; else None."""
    if exc.errno in _RESOURCE_ERRNOS:
        return ResourceError(f"{where}: {exc.strerror or exc} (free space, raise the limit, or point AIRLIFT_CACHE elsewhere)")
    return None


def is_transient_status(status: int) -> bool:
    """408, 429 and every 5xx: a retry may cure them. Every other status will not change on retry."""
    return status in _TRANSIENT_STATUS or status >= 500


def http_status_of(exc: BaseException) -> int | None:
    """Best-effort HTTP status of an exception raised by httpx, requests, huggingface_hub or botocore."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status
    if isinstance(response, dict):  # botocore ClientError
        meta = response.get("ResponseMetadata", {})
        code = meta.get("HTTPStatusCode")
        if isinstance(code, int):
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """True for connection errors, truncated bodies, 429 and 5xx; False for everything else.

    A 401/403/404 or a checksum mismatch is never transient: retrying it only hides the cause.
    """
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (IntegrityError, InputError, ResourceError)):
        return False
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return False
    status = http_status_of(exc)
    if status is not None:
        return is_transient_status(status)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    # Transport-level errors of the HTTP stacks we use, matched by name so the core imports none of them.
    if module.startswith(("httpx", "httpcore", "urllib3", "requests", "botocore")) and any(
        word in name
        for word in ("Connect", "Timeout", "RemoteProtocol", "ReadError", "WriteError", "Protocol", "IncompleteRead", "ChunkedEncoding", "EndpointConnection")
    ):
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)
