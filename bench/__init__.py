"""Benchmarks: each ``bench/bench_*.py`` prints ``BENCH <name> <value> <unit>`` lines."""
