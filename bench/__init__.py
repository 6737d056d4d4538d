"""Benchmarks: load generation against the gRPC server (python -m bench.load)."""
