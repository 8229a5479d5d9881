"""Decoders for what eCapture captures: pure functions and small state machines fed bytes.

They do no I/O and never raise on bad input.
"""

from ecaptureq.decode.classify import classify_payload
from ecaptureq.decode.timestamps import Timestamp, TimeUnit, detect_timestamp

__all__ = ["TimeUnit", "Timestamp", "classify_payload", "detect_timestamp"]
