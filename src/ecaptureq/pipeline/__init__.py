"""Pipelines: a client wired to sinks (record, ui). Orchestration, not storage."""

from ecaptureq.pipeline.recorder import LiveCounters, LiveRecorder

__all__ = ["LiveCounters", "LiveRecorder"]
