"""The lock-down from the command line: serve and watch as real processes over loopback."""

from __future__ import annotations

import argparse
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import make_cert
from conftest import CLI, ENV, Served, start_serve, stop_serve

from ecaptureq.cli import ui as ui_command
from ecaptureq.cli.errors import CliError, ExitCode
from ecaptureq.cli.security import decide_listen, server_security_kwargs
from ecaptureq.cli.serve import register

TOKEN = "cli-test-token-0123456789"
CLEAN_ENV = {k: v for k, v in ENV.items() if k != "ECAPTUREQ_TOKEN"}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**CLEAN_ENV, **(env or {})},
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("ecaptureq watch: warning:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def served_with_token() -> Iterator[Served]:
    served = start_serve("--demo", "--interval", "0.02", "--token", TOKEN)
    yield served
    stop_serve(served)


@pytest.mark.e2e
def test_watch_without_the_token_exits_9(served_with_token: Served) -> None:
    result = cli("watch", served_with_token.url, "--count", "1")
    assert result.returncode == ExitCode.AUTH
    line = one_line_error(result)
    assert "HTTP 401" in line and "--token" in line


@pytest.mark.e2e
def test_watch_with_a_wrong_token_exits_9_and_hides_a_url_token(served_with_token: Served) -> None:
    result = cli("watch", served_with_token.url, "--count", "1", "--token", "nope")
    assert result.returncode == ExitCode.AUTH
    assert "did not accept the token" in one_line_error(result)
    result = cli("watch", served_with_token.url + "?token=guessed-value", "--count", "1")
    assert result.returncode == ExitCode.AUTH
    assert "guessed-value" not in result.stderr and "token=***" in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["option", "env", "query"])
def test_watch_with_the_token(served_with_token: Served, how: str) -> None:
    url = served_with_token.url
    args = ["--token", TOKEN] if how == "option" else []
    env = {"ECAPTUREQ_TOKEN": TOKEN} if how == "env" else None
    if how == "query":
        url += f"?token={TOKEN}"
    result = cli("watch", url, "--count", "2", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--- event ") == 2


@pytest.mark.e2e
def test_the_server_logs_refusals_without_the_token(served_with_token: Served) -> None:
    assert cli("watch", served_with_token.url, "--count", "1", "--token", "leaked-guess").returncode == 9
    result = cli("watch", served_with_token.url, "--count", "1", "--token", TOKEN, "--json", "--timeout", "5")
    assert result.returncode == 0
    assert "refused a handshake" in result.stdout and "HTTP 401" in result.stdout
    assert "leaked-guess" not in result.stdout
    _code, err = stop_serve(served_with_token)
    assert "leaked-guess" not in err


@pytest.mark.e2e
def test_foreign_origin_exits_10_and_an_allowed_one_connects() -> None:
    served = start_serve("--demo", "--interval", "0.02", "--allow-origin", "https://gui.example")
    try:
        result = cli("watch", served.url, "--count", "1", "--origin", "https://evil.example")
        assert result.returncode == ExitCode.FORBIDDEN
        line = one_line_error(result)
        assert "HTTP 403" in line and "origin policy" in line
        result = cli("watch", served.url, "--count", "1", "--origin", "https://gui.example")
        assert result.returncode == 0, result.stderr
    finally:
        stop_serve(served)


@pytest.mark.e2e
def test_wss_verifies_certificates_with_ca_and_insecure(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    served = start_serve(
        "--demo", "--interval", "0.02", "--listen", "wss://127.0.0.1:0/", "--tls-cert", str(cert),
        "--tls-key", str(key),
    )  # fmt: skip
    try:
        assert served.url.startswith("wss://")
        result = cli("watch", served.url, "--count", "1")
        assert result.returncode == ExitCode.CONNECTION
        assert "not trusted" in one_line_error(result)
        result = cli("watch", served.url, "--count", "1", "--ca", str(cert))
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("--- event ") == 1
        result = cli("watch", served.url, "--count", "1", "--insecure")
        assert result.returncode == 0, result.stderr
        assert "not verified" in result.stderr
        result = cli("watch", served.url.replace("wss://", "ws://"), "--count", "1")
        assert result.returncode == ExitCode.CONNECTION
        assert "wss://" in one_line_error(result)
    finally:
        stop_serve(served)


@pytest.mark.e2e
def test_connections_over_max_connections_are_refused() -> None:
    served = start_serve("--demo", "--interval", "0.5", "--max-connections", "1")
    first = subprocess.Popen(
        [*CLI, "watch", served.url, "--verbose"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline()  # the first client is connected and reading
        result = cli("watch", served.url, "--count", "1")
        assert result.returncode == ExitCode.CONNECTION
        assert "HTTP 503" in one_line_error(result)
    finally:
        first.terminate()
        first.communicate(timeout=20)
        stop_serve(served)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--listen", "ws://0.0.0.0:0/"], "ECAPTUREQ_TOKEN="),
        (["--listen", "wss://127.0.0.1:0/"], "needs --tls-cert"),
        (["--tls-key", "k.pem"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "/nonexistent.pem"], "no such file"),
        (["--allow-origin", "gui.example"], "not an origin"),
        (["--max-connections", "0"], "--max-connections must be positive"),
        (["--handshake-timeout", "-1"], "--handshake-timeout must be positive"),
        (["--token", "two words"], "printable ASCII"),
    ],
)
def test_serve_refuses_unsafe_or_bad_security_options(args: list[str], fragment: str) -> None:
    result = cli("serve", "--demo", *args, timeout=30)
    assert result.returncode == ExitCode.USAGE
    assert fragment in one_line_error(result)


@pytest.mark.e2e
def test_serve_offers_a_fresh_token_for_a_network_address() -> None:
    tokens = set()
    for _ in range(2):
        result = cli("serve", "--demo", "--listen", "ws://0.0.0.0:0/", timeout=30)
        match = re.search(r"ECAPTUREQ_TOKEN=(\S+) ", result.stderr)
        assert match is not None, result.stderr
        tokens.add(match.group(1))
    assert len(tokens) == 2 and all(len(t) >= 40 for t in tokens)


@pytest.mark.e2e
def test_watch_refuses_bad_tls_options(tmp_path: Path) -> None:
    result = cli("watch", "wss://127.0.0.1:1/", "--ca", str(tmp_path / "missing.pem"))
    assert result.returncode == ExitCode.USAGE and "no such file" in one_line_error(result)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    result = cli("watch", "wss://127.0.0.1:1/", "--ca", str(tmp_path / "junk.pem"))
    assert result.returncode == ExitCode.USAGE and "--ca" in one_line_error(result)
    result = cli("watch", "wss://127.0.0.1:1/", "--ca", "x.pem", "--insecure")
    assert result.returncode == ExitCode.USAGE and "exclude each other" in one_line_error(result)


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve", "--demo", *argv])


def test_network_address_needs_a_token_or_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    # Checked without binding anything: the decision is made before the server listens.
    monkeypatch.delenv("ECAPTUREQ_TOKEN", raising=False)
    with pytest.raises(CliError) as refused:
        server_security_kwargs(serve_args(), "10.1.2.3", "ws")
    assert refused.value.exit_code == ExitCode.USAGE
    assert server_security_kwargs(serve_args("--insecure"), "10.1.2.3", "ws")["token"] is None
    assert server_security_kwargs(serve_args("--token", TOKEN), "0.0.0.0", "ws")["token"] == TOKEN
    monkeypatch.setenv("ECAPTUREQ_TOKEN", TOKEN)
    assert server_security_kwargs(serve_args(), "::", "ws")["token"] == TOKEN
    assert server_security_kwargs(serve_args(), "127.0.0.1", "ws")["token"] == TOKEN
    monkeypatch.delenv("ECAPTUREQ_TOKEN")
    assert server_security_kwargs(serve_args(), "localhost", "ws")["token"] is None


@pytest.mark.e2e
def test_record_takes_the_token_and_maps_401_to_9(served_with_token: Served, tmp_path: Path) -> None:
    db = str(tmp_path / "capture.db")
    result = cli("record", served_with_token.url, "--db", db, "--quiet")
    assert result.returncode == ExitCode.AUTH
    assert "HTTP 401" in one_line_error(result)
    result = cli("record", served_with_token.url, "--db", db, "--quiet", "--origin", "https://evil.example")
    assert result.returncode == ExitCode.FORBIDDEN
    proc = subprocess.Popen(
        [*CLI, "record", served_with_token.url, "--db", db, "--quiet", "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
    )
    try:
        # recording: still running after a few seconds (a refused one ends at once)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    assert "Traceback" not in err and "401" not in err
    result = cli("query", "--db", db, "SELECT count(*) AS n FROM packets", "--csv")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 0, "the authenticated recording got events"


UNASSIGNED = "192.0.2.1"
"""A non-loopback address no host has (RFC 5737 TEST-NET-1): binding it fails after the listen decision."""


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("options", "warning"),
    [
        (("--token", TOKEN), f"serving on {UNASSIGNED} without TLS: the token and the data cross"),
        (("--insecure",), f"serving on {UNASSIGNED} without a token (--insecure)"),
        (("--token", TOKEN, "--allow-origin", "*"), "--allow-origin '*': any web page"),
    ],
)
def test_ui_and_serve_make_one_listen_decision(
    tmp_path: Path, options: tuple[str, ...], warning: str
) -> None:
    # ui serves its page over plain HTTP: beyond loopback it warns exactly as serve does without TLS.
    served = cli("serve", "--demo", "--listen", f"ws://{UNASSIGNED}:0/", *options)
    db = tmp_path / "ui.db"
    ui = cli(
        "ui",
        "--source",
        "ws://127.0.0.1:1/",
        "--db",
        str(db),
        "--listen",
        f"http://{UNASSIGNED}:0/",
        *options,
    )
    warnings: list[list[str]] = []
    for result, command in ((served, "serve"), (ui, "ui")):
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == ExitCode.CONNECTION, result.stderr  # cannot listen: no host has it
        prefix = f"ecaptureq {command}: warning: "
        warnings.append(
            [ln.removeprefix(prefix) for ln in result.stderr.splitlines() if ln.startswith(prefix)]
        )
    assert warnings[0] == warnings[1] and any(w.startswith(warning) for w in warnings[0]), warnings
    assert not db.exists()  # the listen decision and the bind come before the database


def ui_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ui_command.register(parser.add_subparsers())
    return parser.parse_args(["ui", "--db", "x.db", *argv])


@pytest.mark.parametrize(
    "options",
    [(), ("--insecure",), ("--token", TOKEN), ("--token", TOKEN, "--allow-origin", "*")],
    ids=["nothing", "insecure", "token", "any-origin"],
)
def test_the_listen_decision_reads_ui_and_serve_options_alike(
    options: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Made without listening: the same decision, refusal and warnings from either command's options.
    monkeypatch.delenv("ECAPTUREQ_TOKEN", raising=False)
    outcomes = []
    for args in (serve_args(*options), ui_args(*options)):
        try:
            decision = decide_listen(args, "10.1.2.3", tls=False, command="cmd")
        except CliError as exc:
            outcomes.append((exc.exit_code, "refusing to listen on 10.1.2.3 without a token" in str(exc)))
        else:
            outcomes.append((decision.token, decision.loopback, decision.allowed_origins))
        outcomes.append(capsys.readouterr().err)
    assert outcomes[:2] == outcomes[2:]
    if not options:
        assert outcomes[0] == (ExitCode.USAGE, True)
    else:
        assert "ecaptureq cmd: warning: serving on 10.1.2.3 without" in outcomes[1]
