"""Generated upstream content: deterministic pseudo-random bytes, small repos, specs."""

from __future__ import annotations

import hashlib
import random


def pseudo_random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_model(hub, repo_id: str, *, weights_size: int = 2_000_000, seed: int = 1, **kwargs) -> dict[str, bytes]:
    files = {
        "config.json": b'{"architectures": ["TinyForCausalLM"], "hidden_size": 64}\n',
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}\n',
        "model.safetensors": pseudo_random(weights_size, seed),
        "nested/dir/notes.txt": b"generated for airlift tests\n",
    }
    hub.add_repo("model", repo_id, files=files, **kwargs)
    return files


def add_dataset(hub, repo_id: str, *, seed: int = 2, **kwargs) -> dict[str, bytes]:
    files = {
        "README.md": b"# a generated dataset\n",
        "data/train-00000.parquet": pseudo_random(700_000, seed),
        "data/test-00000.parquet": pseudo_random(90_000, seed + 1),
        "data/extra.bin": pseudo_random(50_000, seed + 2),
    }
    hub.add_repo("dataset", repo_id, files=files, **kwargs)
    return files
