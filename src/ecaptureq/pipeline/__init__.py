"""Pipelines: a client wired to sinks (record, ui). Orchestration, not storage."""

from ecaptureq.pipeline.recorder import LiveRecorder, LiveStats

__all__ = ["LiveRecorder", "LiveStats"]
