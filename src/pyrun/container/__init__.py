"""The lifecycle facade the CLI calls: one module per operation."""
