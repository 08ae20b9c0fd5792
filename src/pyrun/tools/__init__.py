"""Helpers for demos and tests; never imported by the runtime itself."""
