"""Command-line layer: parses argv and calls the container facade, nothing more."""
