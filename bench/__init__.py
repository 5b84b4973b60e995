"""Benchmarks for `make bench`: each measured next to a baseline run in the same invocation."""
