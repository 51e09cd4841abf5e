"""Benchmarks of lfm_core against its peers (run ``python -m benchmarks.harness --help``)."""
