"""Prefect flows: control flow only; the steps live in alseg_core."""
