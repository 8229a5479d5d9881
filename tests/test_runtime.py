"""The CLI runtime: real SIGINT/SIGTERM delivered to this process stop a command's work cleanly, a failing
task ends the run with its own error, every command's ``exit codes:`` block comes from ``ExitCode``, and
one reporter prints the ``--stats`` lines."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import uvloop

import ecaptureq.cli
from ecaptureq.cli.errors import ExitCode
from ecaptureq.cli.main import COMMANDS, build_parser
from ecaptureq.cli.runtime import Lifecycle, run_event_loop, run_until_signal, stop_on_signals, watching
from ecaptureq.cli.stats import StatsReporter, format_stats
from ecaptureq.protocol import Event
from ecaptureq.server import Server
from ecaptureq.tuning import GC_THRESHOLD


class Boom(Exception):
    """A task's own error."""


async def _forever(cancelled: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(name)
        raise


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_stops_the_run_and_cancels_the_work(sig: signal.Signals) -> None:
    cancelled: list[str] = []
    asyncio.get_running_loop().call_later(0.01, os.kill, os.getpid(), sig)
    stopped = await asyncio.wait_for(run_until_signal(_forever(cancelled, "a"), _forever(cancelled, "b")), 20)
    assert stopped is True
    assert sorted(cancelled) == ["a", "b"]


async def test_a_failing_task_ends_the_run_with_its_error_and_the_others_are_cancelled() -> None:
    cancelled: list[str] = []

    async def fail() -> None:
        await asyncio.sleep(0)
        raise Boom("the source broke")

    with pytest.raises(Boom, match="the source broke"):
        await asyncio.wait_for(run_until_signal(_forever(cancelled, "other"), fail()), 20)
    assert cancelled == ["other"]


async def test_a_task_that_ends_is_returned_and_the_rest_keep_running_until_close() -> None:
    cancelled: list[str] = []
    async with Lifecycle() as life:
        done = life.start(asyncio.sleep(0))
        running = life.start(_forever(cancelled, "running"))
        assert await asyncio.wait_for(life.wait(done), 20) == {done}
        assert not running.done() and not life.stop.is_set()
    assert running.cancelled() and cancelled == ["running"]
    assert await run_until_signal(asyncio.sleep(0)) is False  # ended by its work, not by a signal


async def test_watching_ends_the_wait_on_failure_only() -> None:
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    async with Lifecycle() as life:
        task = life.start(watching(first))
        first.set_result(None)
        assert await life.wait(task, life.start(asyncio.sleep(0.05))) != {task}
        assert not task.done()  # succeeded: waits for the others
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(Boom("refused"))
    with pytest.raises(Boom, match="refused"):
        await asyncio.wait_for(run_until_signal(watching(failed), asyncio.Event().wait()), 20)


def test_stop_on_signals_without_a_loop_sets_stop_and_restores_the_handlers() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop = threading.Event()
    with stop_on_signals(stop.set):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(20)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_every_command_lists_only_codes_of_the_enum() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    listed = {}
    for name, sub in commands.items():
        block = (sub.epilog or "").partition("exit codes:")[2]
        listed[name] = [int(code) for code in re.findall(r"^  (\d+) ", block, re.M)]
    unknown = {name: [c for c in codes if c not in set(ExitCode)] for name, codes in listed.items()}
    assert not any(unknown.values()), unknown
    assert all(ExitCode.OK in codes for codes in listed.values() if codes)
    assert listed["tls"] == [0, 2, 3, 5, 6, 7, 8]


@pytest.mark.e2e
async def test_the_stats_reporter_prints_each_component_with_rates_since_the_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with Server(heartbeat_interval=60) as server:
        reporter = StatsReporter().add(lambda: server.stats, format_stats)
        for n in range(3):
            server.publish_event(Event(timestamp=n + 1, uuid=f"1_1_curl_{n}_0", payload=b"x"))
        reporter.tick()
        server.publish_event(Event(timestamp=9, uuid="1_1_curl_9_0", payload=b"y"))
        reporter.tick()
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(reporter.every(0.01, stop), 20)  # a stop ends it without another line
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("ecaptureq serve: stats: 3 events (")
    assert second.startswith("ecaptureq serve: stats: 4 events (")


def _commands(parser: object) -> dict[str, object]:
    return dict(next(a for a in parser._actions if a.dest == "command").choices)  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_a_command_builds_its_own_parser_alone_and_imports_no_other_command() -> None:
    names = [module.rpartition(".")[2] for module in COMMANDS]
    assert list(_commands(build_parser())) == names  # each module adds the command named as it
    for name in names:
        assert list(_commands(build_parser(name))) == [name]
    code = (
        "import sys\n"
        "from ecaptureq.cli.main import main\n"
        "try:\n"
        "    main(['query', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('ecaptureq.cli.') and m[14:] in "
        + repr(names)
        + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.splitlines()[-1] == "['ecaptureq.cli.query']"


ASYNCIO_RUN = ("asyncio", "run")


def test_commands_run_their_loop_on_uvloop() -> None:
    async def loop_type() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert issubclass(run_event_loop(loop_type()), uvloop.Loop)
    # every command but bench (whose in-process rows measure the client as the Python API runs it) starts
    # its loop through run_event_loop
    cli = Path(ecaptureq.cli.__file__).parent
    calls = [
        (path.name, node)
        for path in sorted(cli.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
    ]
    direct = [name for name, node in calls if (getattr(node.value, "id", ""), node.attr) == ASYNCIO_RUN]
    assert direct == ["bench.py"]


TUNED = (
    "import gc, sys; from ecaptureq.cli.main import main; "
    "code = main(sys.argv[1:]); print(int(code), *gc.get_threshold())"
)
"""Runs a command in this process, then prints its exit code and the collector's thresholds it left."""


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv",
    [
        ["agent", "--nats", "nats://127.0.0.1:1", "--demo", "--spool", "{missing}/spool.db"],
        ["record", "--db", "{missing}/capture.db", "ws://127.0.0.1:1/"],
        ["collect", "--nats", "nats://127.0.0.1:1", "--db", "{missing}/capture.db"],
    ],
    ids=lambda argv: argv[0],
)
def test_commands_handling_every_message_tune_the_garbage_collector(tmp_path: Path, argv: list[str]) -> None:
    """Each runs in a process of its own with ``GC_THRESHOLD`` (the setting is the process's): here until its
    file cannot be opened, a moment after it starts."""
    missing = tmp_path / "missing"
    args = [word.format(missing=missing) for word in argv]
    out = subprocess.run([sys.executable, "-c", TUNED, *args], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [str(int(ExitCode.STORAGE)), *map(str, GC_THRESHOLD)], out.stderr
