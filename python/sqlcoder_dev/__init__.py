"""Developer tooling shared by tests, the demo, benchmarks and evaluation (never used in production)."""

__all__ = ["__version__"]

__version__ = "0.4.0"
