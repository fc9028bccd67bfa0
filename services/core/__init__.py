"""Shared code of every llm-relay service: contracts, bus helpers, settings, logs, metrics, errors."""
