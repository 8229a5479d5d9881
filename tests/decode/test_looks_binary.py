"""``looks_binary`` counts control characters in the bytes (in C); it must judge exactly as its definition
reads: the decoded text, character by character."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ecaptureq.protocol.text import BINARY_SAMPLE, CONTROL_SHARE, looks_binary


def by_definition(data: bytes) -> bool:
    """The docstring's words as plain Python: NUL, invalid UTF-8 (not a character cut at the sample's
    end), or too many control characters other than CR, LF, tab, form feed and backspace."""
    sample = data[:BINARY_SAMPLE]
    if b"\x00" in sample:
        return True
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:
            return True
        text = sample[: exc.start].decode("utf-8", "replace")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f\b")
    return controls > max(2, len(text) // CONTROL_SHARE)


# Text with a few controls and many-byte characters, sometimes cut anywhere (a character split at the end)
_texts = st.text(
    alphabet=st.sampled_from(["a", " ", "\r", "\n", "\t", "\b", "\f", "\x1b", "\x07", "é", "€", "𝄞", "\x7f"]),
    max_size=300,
).map(lambda t: t.encode("utf-8"))


@settings(max_examples=400, deadline=None)
@given(st.one_of(_texts, _texts.flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])), st.binary()))
def test_looks_binary_matches_its_definition(data: bytes) -> None:
    assert looks_binary(data) == by_definition(data)


def test_the_sample_boundary_cuts_a_character() -> None:
    # a 3-byte character straddling BINARY_SAMPLE: cut at the end, not evidence of binary
    data = b"a" * (BINARY_SAMPLE - 1) + "€".encode() + b"\x01" * 10
    assert looks_binary(data) is by_definition(data) is False
    controls = b"\x1b" * (BINARY_SAMPLE // CONTROL_SHARE + 1) + b"a" * (BINARY_SAMPLE - 300) + "€".encode()
    assert looks_binary(controls) is by_definition(controls) is True
