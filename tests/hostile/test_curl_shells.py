"""Copy as curl is inert when pasted into bash, zsh, dash and fish, and gives curl exactly the intended argv.

Each command runs in a real shell, in a temporary directory, with ``curl`` on PATH replaced by a recorder
that writes the argv it received (and its stdin) to files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecaptureq.decode.model import Exchange, HttpMessage
from ecaptureq.web.curl import Shell, curl_argv, curl_command

pytestmark = pytest.mark.e2e

SHELLS: list[tuple[str, Shell]] = [("bash", "posix"), ("zsh", "posix"), ("dash", "posix"), ("fish", "fish")]

RECORDER = """#!/usr/bin/python3
import os, sys
here = os.environ["RECORD_DIR"]
with open(os.path.join(here, "argv"), "wb") as f:
    f.write(b"\\0".join(os.fsencode(a) for a in sys.argv[1:]))
with open(os.path.join(here, "stdin"), "wb") as f:
    f.write(sys.stdin.buffer.read() if "@-" in sys.argv else b"")
"""

ATTACKS = [
    # the review's attack: fish reads \\' inside single quotes as an escaped quote
    [("X-A", "a\\"), ("X-B", "; touch PWNED #")],
    [("X-C", "'; touch PWNED; '"), ("X-D", '"$(touch PWNED)"`touch PWNED`')],
    [("X-E", "$(touch PWNED)"), ("X-F", "\\'; touch PWNED #\\")],
    [("X-G", "a\nb; touch PWNED"), ("X-H", "\x1b]52;c;cHduZWQ=\x07\r\x9b\u202e(touch PWNED)")],
    [("X-I", "{touch,PWNED}"), ("X-J", "%s%n %% \\x41 \\101"), ("X-K", "~ * ? [a] !! \\\\ ")],
]


def shell_or_skip(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup-test installs it)")
    return path


def paste(shell: str, command: str, tmp: Path) -> tuple[list[bytes] | None, bytes]:
    """Run ``command`` in ``shell`` as pasted, in an empty directory; return curl's argv and its stdin."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    recorder = bindir / "curl"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    work = tmp / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "RECORD_DIR": str(tmp), "HOME": str(tmp), "LANG": "C.UTF-8"}
    for name in ("argv", "stdin"):
        (tmp / name).unlink(missing_ok=True)
    result = subprocess.run(
        [shell_or_skip(shell), "-c", command], cwd=work, env=env, capture_output=True, timeout=30, check=False
    )
    assert not any(work.iterdir()), f"{shell} created {list(work.iterdir())}: {result.stderr!r}"
    if not (tmp / "argv").exists():
        return None, b""
    return (tmp / "argv").read_bytes().split(b"\0"), (tmp / "stdin").read_bytes()


def detail(headers: list[tuple[str, str]], body: bytes | None = None, text: str | None = None) -> Exchange:
    req = HttpMessage("request", method="POST" if body or text else "GET", headers=list(headers))
    if text is not None:
        req.body_text = text
    elif body is not None:
        req.body = body
    return Exchange(id=1, connection="c", protocol="http/1.1", request=req)


def check(shell: str, dialect: Shell, d: Exchange, url: str, tmp: Path) -> None:
    command = curl_command(d, url, dialect)
    assert command is not None
    made = curl_argv(d, url)
    assert made is not None
    want, body = made
    got, stdin = paste(shell, command, tmp)
    assert got == [os.fsencode(a) for a in want[1:]], (shell, command)
    assert stdin == (body or b"")


@pytest.mark.parametrize(("shell", "dialect"), SHELLS)
@pytest.mark.parametrize("headers", ATTACKS)
def test_attack_headers_are_inert(
    shell: str, dialect: Shell, headers: list[tuple[str, str]], tmp_path: Path
) -> None:
    check(
        shell, dialect, detail(headers, text="a=1&b='\\'; touch PWNED"), "https://api.example.com/p", tmp_path
    )


@pytest.mark.parametrize(("shell", "dialect"), SHELLS)
def test_binary_body_and_hostile_scheme(shell: str, dialect: Shell, tmp_path: Path) -> None:
    body = bytes(range(256)) + b"%s%n\\x41'\\"
    check(shell, dialect, detail([("Host", "h")], body=body), "-o/tmp/x://h/p", tmp_path)
    argv = curl_argv(detail([("Host", "h")]), "-o/tmp/x://h/p")
    assert argv is not None and argv[0][argv[0].index("--url") + 1] == "https://h/p"


header_text = st.text(
    st.characters(min_codepoint=1, max_codepoint=0x10FFFF, exclude_categories=["Cs"]), max_size=40
)


@pytest.mark.parametrize(("shell", "dialect"), SHELLS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=header_text, body=st.one_of(st.none(), st.binary(max_size=64)))
def test_generated_values_are_inert(
    shell: str, dialect: Shell, value: str, body: bytes | None, tmp_path: Path
) -> None:
    check(shell, dialect, detail([("X-Gen", value)], body=body), f"https://h/{value}", tmp_path)
