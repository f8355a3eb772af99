"""Benchmarks that print figures (`python -m tomstress.benchmarks.<name>`)."""
