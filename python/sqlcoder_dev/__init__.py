"""Developer tooling shared by tests, the demo, benchmarks and evaluation (never used in production)."""
