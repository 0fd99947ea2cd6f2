"""Prefect flows: the DAGs behind every airlift command and deployment, one module per flow."""
