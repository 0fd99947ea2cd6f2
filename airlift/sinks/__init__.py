"""Sinks: where a verified bundle's content goes inside the air gap."""
