"""The package version (recorded with every saved set and package; pyproject.toml states the same)."""
__version__ = "0.1.0"
