"""Benchmarks: each prints one JSON object (run by hand, not part of the test run)."""
