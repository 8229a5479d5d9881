"""Benchmarks of the server and the client, each beside a baseline measured in the same run."""

from ecaptureq.bench.runner import Row, format_table, run_all

__all__ = ["Row", "format_table", "run_all"]
