"""Helpers for tests, the demo and the benchmark (not used by the servers or the client):
starting server processes, real sample photos, synthetic vectors, running the CLI."""
