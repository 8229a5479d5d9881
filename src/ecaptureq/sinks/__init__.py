"""Sinks that take captured events (or decoded flows) to other tools' formats, such as pcapng."""
