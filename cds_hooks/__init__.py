"""CDS Hooks 2.0 protocol: generic, drug-agnostic models and helpers."""
