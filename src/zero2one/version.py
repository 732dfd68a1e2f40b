"""The package's version, on its own: every layer may import it."""

__version__ = "0.1.0"
