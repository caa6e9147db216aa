"""Benchmarks (`make bench`): speed and memory, measured and reported, never asserted."""
