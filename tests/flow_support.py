"""An exchange as rows already in users' capture databases hold it: written before the flow format had a
version (format 1), by the code of that time. Loading it is the compatibility promise of the flow model."""

from __future__ import annotations

from typing import Any

# Written by the code before the format had a version (format 1): a request with a form body, and a
# gzip-encoded binary response with a decoding error. Such rows are in users' databases.
FORMAT_1: dict[str, Any] = {
    "id": 7,
    "connection": "1234_5678",
    "protocol": "http/1.1",
    "stream_id": None,
    "pid": 42,
    "pname": "curl",
    "tid": 43,
    "fd": 5,
    "src_ip": "10.0.0.2",
    "src_port": 50000,
    "dst_ip": "93.184.216.34",
    "dst_port": 443,
    "clock": "epoch",
    "started_ns": 1700000000000000000,
    "ended_ns": 1700000000050000000,
    "latency": 0.05,
    "request": {
        "kind": "request",
        "protocol": "http/1.1",
        "method": "POST",
        "url": "https://api.example.com/v1/login?next=/a",
        "path": "/v1/login?next=/a",
        "scheme": "https",
        "authority": "api.example.com",
        "status": None,
        "reason": None,
        "headers": [
            ["Host", "api.example.com"],
            ["Content-Type", "application/x-www-form-urlencoded"],
            ["X-Odd", "caf\u00e9 \u0001"],
        ],
        "trailers": [],
        "content_type": "application/x-www-form-urlencoded",
        "content_encoding": None,
        "charset": None,
        "body_size": 26,
        "body_text": "user=o%27neil&pass=hunter2",
        "body_b64": None,
        "is_json": False,
        "form": [["user", "o'neil"], ["pass", "hunter2"]],
        "grpc_messages": None,
        "stream_id": None,
        "truncated": False,
        "complete": True,
        "errors": [],
        "notes": [],
        "raw_b64": None,
        "time_ns": 1700000000000000000,
    },
    "response": {
        "kind": "response",
        "protocol": "http/1.1",
        "method": None,
        "url": None,
        "path": None,
        "scheme": None,
        "authority": None,
        "status": 200,
        "reason": "OK",
        "headers": [["Content-Type", "application/octet-stream"], ["Content-Encoding", "gzip"]],
        "trailers": [],
        "content_type": "application/octet-stream",
        "content_encoding": "gzip",
        "charset": None,
        "body_size": 30,
        "body_text": None,
        "body_b64": "AAECYmluYXJ5/w==",
        "is_json": False,
        "form": None,
        "grpc_messages": None,
        "stream_id": None,
        "truncated": False,
        "complete": True,
        "errors": ["HTTP/1.x: example error"],
        "notes": [],
        "raw_b64": "3q0=",
        "time_ns": 1700000000050000000,
    },
}

# The same exchange as the store of that time wrote it into ``exchanges`` (exchange_row): headers and bodies
# in their own columns, the rest in ``detail`` (format 1, without them). Such rows are in users' databases.
FORMAT_1_ROW: tuple[Any, ...] = (
    7,
    "1234_5678",
    "http/1.1",
    None,
    42,
    "curl",
    "10.0.0.2",
    50000,
    "93.184.216.34",
    443,
    1700000000000000000,
    1700000000050000000,
    0.05,
    "POST",
    "https://api.example.com/v1/login?next=/a",
    "api.example.com",
    "/v1/login?next=/a",
    200,
    '[["Host","api.example.com"],["Content-Type","application/x-www-form-urlencoded"],'
    '["X-Odd","café \\u0001"]]',
    '[["Content-Type","application/octet-stream"],["Content-Encoding","gzip"]]',
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    b"user=o%27neil&pass=hunter2",
    b"\x00\x01\x02binary\xff",
    "user=o%27neil&pass=hunter2",
    None,
    26,
    30,
    1,
    '["HTTP/1.x: example error"]',
    '{"id":7,"connection":"1234_5678","protocol":"http/1.1","stream_id":null,"pid":42,"pname":"curl","tid":43,'
    '"fd":5,"src_ip":"10.0.0.2","src_port":50000,"dst_ip":"93.184.216.34","dst_port":443,"clock":"epoch",'
    '"started_ns":1700000000000000000,"ended_ns":1700000000050000000,"latency":0.05,"request":{"kind":"request",'
    '"protocol":"http/1.1","method":"POST","url":"https://api.example.com/v1/login?next=/a",'
    '"path":"/v1/login?next=/a","scheme":"https","authority":"api.example.com","status":null,"reason":null,'
    '"trailers":[],"content_type":"application/x-www-form-urlencoded","content_encoding":null,"charset":null,'
    '"body_size":26,"is_json":false,"stream_id":null,"truncated":false,"complete":true,"errors":[],"notes":[],'
    '"raw_b64":null,"time_ns":1700000000000000000},"response":{"kind":"response","protocol":"http/1.1",'
    '"method":null,"url":null,"path":null,"scheme":null,"authority":null,"status":200,"reason":"OK",'
    '"trailers":[],"content_type":"application/octet-stream","content_encoding":"gzip","charset":null,'
    '"body_size":30,"is_json":false,"stream_id":null,"truncated":false,"complete":true,'
    '"errors":["HTTP/1.x: example error"],"notes":[],"raw_b64":"3q0=","time_ns":1700000000050000000}}',
    None,
)
