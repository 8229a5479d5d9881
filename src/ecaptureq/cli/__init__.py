"""The ``ecaptureq`` command line."""
