"""Prefect tasks: thin wrappers, each running one pipeline step (a DVC stage)."""
