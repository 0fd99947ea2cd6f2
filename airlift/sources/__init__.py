"""Sources: resolve a spec entry to an exact upstream reference, then fetch its bytes into the cache."""
