"""Benchmarks that print figures (run with `python -m tomproto.benchmarks.<name>`)."""
