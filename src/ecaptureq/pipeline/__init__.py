"""Pipelines: a client wired to sinks (record, ui). Orchestration, not storage."""

from ecaptureq.pipeline.recorder import LiveRecorder, LiveStats
from ecaptureq.pipeline.store_process import StoreProcess

__all__ = ["LiveRecorder", "LiveStats", "StoreProcess"]
