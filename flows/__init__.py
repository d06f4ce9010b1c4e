"""Prefect flows composing the stages; holds no model code."""
