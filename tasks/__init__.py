"""Prefect tasks: thin wrappers over the airlift core that add retries, caching, results and logging."""
