"""ecaptureq: the eCaptureQ protocol in Python.

A server that speaks eCapture's WebSocket API (fed by eBPF capture, replay or a demo source) and a
client, decoders and sinks for what eCapture captures.
"""

__version__ = "0.1.0"
