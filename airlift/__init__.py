"""airlift: the Prefect-free core (spec and site models, bundle format, sources, sinks, CLI)."""

__version__ = "0.1.0"
