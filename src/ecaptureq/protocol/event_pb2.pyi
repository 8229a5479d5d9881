from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_TYPE_HEARTBEAT: _ClassVar[LogType]
    LOG_TYPE_PROCESS_LOG: _ClassVar[LogType]
    LOG_TYPE_EVENT: _ClassVar[LogType]
LOG_TYPE_HEARTBEAT: LogType
LOG_TYPE_PROCESS_LOG: LogType
LOG_TYPE_EVENT: LogType

class Event(_message.Message):
    __slots__ = ("timestamp", "uuid", "src_ip", "src_port", "dst_ip", "dst_port", "pid", "pname", "type", "length", "payload")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PNAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    timestamp: int
    uuid: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    pid: int
    pname: str
    type: int
    length: int
    payload: bytes
    def __init__(self, timestamp: _Optional[int] = ..., uuid: _Optional[str] = ..., src_ip: _Optional[str] = ..., src_port: _Optional[int] = ..., dst_ip: _Optional[str] = ..., dst_port: _Optional[int] = ..., pid: _Optional[int] = ..., pname: _Optional[str] = ..., type: _Optional[int] = ..., length: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("timestamp", "count", "message")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    timestamp: int
    count: int
    message: str
    def __init__(self, timestamp: _Optional[int] = ..., count: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("log_type", "event_payload", "heartbeat_payload", "run_log")
    LOG_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RUN_LOG_FIELD_NUMBER: _ClassVar[int]
    log_type: LogType
    event_payload: Event
    heartbeat_payload: Heartbeat
    run_log: str
    def __init__(self, log_type: _Optional[_Union[LogType, str]] = ..., event_payload: _Optional[_Union[Event, _Mapping]] = ..., heartbeat_payload: _Optional[_Union[Heartbeat, _Mapping]] = ..., run_log: _Optional[str] = ...) -> None: ...
