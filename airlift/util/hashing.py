"""Git's blob id: sha1("blob <size>\\0" + content), the id the Hugging Face Hub gives non-LFS files.

One implementation, used while downloading (incrementally, to check small hub files), by `serve` (to
answer as the hub does) and by the hub stand-in.
"""

from __future__ import annotations

import hashlib


def git_blob_hasher(size: int) -> hashlib._Hash:
    """An incremental git blob-id hasher for content of `size` bytes (feed it the content)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % size)
    return digest


def git_blob_id(data: bytes) -> str:
    """The git blob id of `data`, as `git hash-object` prints it."""
    digest = git_blob_hasher(len(data))
    digest.update(data)
    return digest.hexdigest()
