"""The web UI (``ecaptureq ui``): a Starlette app over a capture database, live or recorded.

* :mod:`ecaptureq.web.app`: the ASGI application and its JSON/SSE API;
* :mod:`ecaptureq.web.guard`: Host, Origin and token checks in front of it;
* :mod:`ecaptureq.web.queries`: the read-only queries behind the API;
* recording a live server while the UI shows it is :mod:`ecaptureq.pipeline.recorder`, shared with ``record``;
* ``static/``: the page, committed ready to serve (no build step, nothing fetched from the network).
"""
