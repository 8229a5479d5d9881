"""The eCaptureQ wire protocol: typed messages and the codec that turns them into frames and back.

Every WebSocket binary frame carries one protobuf ``LogEntry`` (schema in ``event.proto`` beside this
file, proto package ``event``). ``event_pb2`` is generated from it by ``scripts/gen-proto``.
"""

from ecaptureq.protocol.codec import (
    MAX_FRAME_SIZE,
    DecodeError,
    ErrorKind,
    decode,
    encode,
    encode_event,
    encode_heartbeat,
    encode_run_log,
)
from ecaptureq.protocol.messages import (
    EVENT_TYPE_NAMES,
    Event,
    EventType,
    Heartbeat,
    LogType,
    Message,
    RunLog,
    event_type_name,
    run_log_line,
)

__all__ = [
    "EVENT_TYPE_NAMES",
    "MAX_FRAME_SIZE",
    "DecodeError",
    "ErrorKind",
    "Event",
    "EventType",
    "Heartbeat",
    "LogType",
    "Message",
    "RunLog",
    "decode",
    "encode",
    "encode_event",
    "encode_heartbeat",
    "encode_run_log",
    "event_type_name",
    "run_log_line",
]
