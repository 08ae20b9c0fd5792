"""The state directory: one locked directory per container under --root."""
