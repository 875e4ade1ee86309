"""Helpers for tests, benchmarks and examples (not used by the library itself)."""
