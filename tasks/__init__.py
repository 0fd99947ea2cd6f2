"""Prefect tasks: thin wrappers over the airlift core that add caching, persisted results, logging and progress."""
