"""Clients of an eCaptureQ server: real eCapture or ecaptureq's own."""

from ecaptureq.client.connection import (
    DEFAULT_ORIGIN,
    CertificateNotTrusted,
    Client,
    ClientError,
    Connected,
    ConnectError,
    ConnectionLost,
    Disconnected,
    HandshakeRefused,
    Status,
    SyncClient,
)
from ecaptureq.client.session import Session, SessionStats
from ecaptureq.client.url import BadURL, normalize_url

__all__ = [
    "DEFAULT_ORIGIN",
    "BadURL",
    "CertificateNotTrusted",
    "Client",
    "ClientError",
    "ConnectError",
    "Connected",
    "ConnectionLost",
    "Disconnected",
    "HandshakeRefused",
    "Session",
    "SessionStats",
    "Status",
    "SyncClient",
    "normalize_url",
]
