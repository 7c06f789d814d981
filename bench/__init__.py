"""Benchmarks: the real loops and plugins against the local fake providers (see README)."""
