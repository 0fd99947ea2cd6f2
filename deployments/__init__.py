"""Deployment helpers: what prefect.yaml cannot express by itself, and the demo."""
