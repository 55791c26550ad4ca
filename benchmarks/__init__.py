"""Benchmarks on the real stack: `python -m benchmarks …` (see __main__.py)."""
