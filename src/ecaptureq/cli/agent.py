"""``ecaptureq agent --nats URL``: publish one node's capture to NATS JetStream, through a local spool."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from ecaptureq.cli.capture_options import add_capture_options
from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes
from ecaptureq.cli.explain import agent_notice, connect_error, replay_error
from ecaptureq.cli.fleet import (
    add_nats_options,
    add_retention_options,
    fleet_error,
    nats_options_from_args,
    retention_from_args,
)
from ecaptureq.cli.runtime import Lifecycle, run_event_loop
from ecaptureq.cli.security import add_client_security_options, client_security_kwargs
from ecaptureq.cli.terminal import warn
from ecaptureq.client import DEFAULT_ORIGIN, BadURL, Client, ConnectError
from ecaptureq.fleet import Agent, BadNodeName, FleetError, Spool, SpoolError, check_node, default_node
from ecaptureq.fleet.agent import DEFAULT_HEARTBEAT_INTERVAL
from ecaptureq.fleet.spool import DEFAULT_SPOOL_BYTES
from ecaptureq.fleet.subjects import parse_size
from ecaptureq.protocol import Event, RunLog
from ecaptureq.sources.replay import ReplayError, ReplaySource, load_recording
from ecaptureq.tuning import tune_gc

DEFAULT_SPOOL_DIR = "/var/lib/ecaptureq"

EPILOG = """\
examples:
  sudo ecaptureq agent --nats nats://nats.example:4222 --tls          # this host's TLS plaintext
  ecaptureq agent --nats nats://127.0.0.1:4222 --node web-1 --source ws://127.0.0.1:28257/   # relay eCapture
  ecaptureq agent --nats nats://127.0.0.1:4222 --demo --count 100     # try it without root
  ecaptureq agent --nats nats://127.0.0.1:4222 --replay capture.jsonl --speed 0

Each message goes to ecaptureq.<node>.event|log|heartbeat as the unchanged LogEntry bytes, with the
headers Ecaptureq-Node, Ecaptureq-Source, Ecaptureq-Agent, Ecaptureq-Seq and Nats-Msg-Id (JetStream
stores a re-publish after a reconnect once). Everything goes through the spool file first and leaves it
when JetStream acknowledged it: while NATS is down or slow the spool fills up to --spool-size (what does
not fit is counted and reported, on stderr and in the stream), and a restarted agent sends what it left.
A --demo or --replay agent exits when its source ended and the spool is empty (or --drain-timeout ran out).

""" + command_exit_codes(
    (
        (
            ExitCode.OK,
            "done (source ended and everything was acknowledged, or Ctrl-C / SIGTERM after draining)",
        ),
        (ExitCode.USAGE, "usage error (bad option, bad node name, unreadable recording)"),
        (
            ExitCode.INCOMPLETE,
            "stopped with messages still in the spool (NATS unreachable: they are sent on the next start)\n"
            "(an unreachable NATS or --source server is retried with backoff, never an error)",
        ),
        (ExitCode.NO_PRIVILEGE, "--tls: not root, as ecaptureq tls"),
        (ExitCode.NO_BPF, "--tls: no eBPF support, as ecaptureq tls"),
        (ExitCode.NO_LIBSSL, "--tls: no libssl, as ecaptureq tls"),
        (ExitCode.NO_PID, "--tls: no such --pid, as ecaptureq tls"),
        (ExitCode.AUTH, "NATS refused the credentials (or --source's server refused its token)"),
        (ExitCode.FORBIDDEN, "--source's server refused the handshake (its Origin policy)"),
        (ExitCode.STORAGE, "the spool file cannot be written, or is damaged"),
    )
)


def _spool_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``agent`` subcommand."""
    parser = sub.add_parser(
        "agent",
        help="publish this node's capture (or a relayed stream) to NATS JetStream",
        description="A node agent: capture with eBPF (--tls), relay an eCaptureQ WebSocket stream "
        "(--source, e.g. a real eCapture started with --ecaptureq), replay a recording or run the demo, and "
        "publish every message to NATS JetStream through a bounded local spool, so nothing is lost while "
        "NATS is away.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_nats_options(parser)
    parser.add_argument(
        "--node",
        metavar="NAME",
        help="this node's name in subjects and the database (default: the host name's first label, "
        "e.g. from the Kubernetes node name)",
    )
    source = parser.add_argument_group("source (exactly one)")
    kinds = source.add_mutually_exclusive_group(required=True)
    kinds.add_argument("--tls", action="store_true", help="capture OpenSSL plaintext with eBPF (root)")
    kinds.add_argument(
        "--source", metavar="URL", help="relay an eCaptureQ server, e.g. ws://127.0.0.1:28257/"
    )
    kinds.add_argument("--demo", action="store_true", help="synthetic demo traffic")
    kinds.add_argument("--replay", type=Path, metavar="FILE", help="a watch --json recording")
    add_capture_options(source, "--tls: ")
    source.add_argument("--count", type=int, metavar="N", help="--demo: stop after N events")
    source.add_argument(
        "--interval",
        type=float,
        default=0.5,
        metavar="S",
        help="--demo: seconds between exchanges (default 0.5)",
    )
    source.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="--replay: 1 recorded pace, 0 as fast as possible",
    )
    source.add_argument(
        "--origin", default=DEFAULT_ORIGIN, help="--source: Origin header to send (default %(default)s)"
    )
    add_client_security_options(parser)  # --token, --ca, --insecure of the --source server
    spool = parser.add_argument_group("spool")
    spool.add_argument(
        "--spool",
        type=Path,
        metavar="FILE",
        help=f"the spool file (default {DEFAULT_SPOOL_DIR}/spool-<node>.db as root, "
        "else ./ecaptureq-spool-<node>.db)",
    )
    spool.add_argument(
        "--spool-size",
        type=_spool_size,
        default=DEFAULT_SPOOL_BYTES,
        metavar="SIZE",
        help=f"the most message bytes spooled: bytes, or 64M, 1G (default {DEFAULT_SPOOL_BYTES // 1024**2}M)",
    )
    spool.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="at the end, wait this long for the spool to empty (default 30)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        metavar="S",
        help="seconds between heartbeats on ecaptureq.<node>.heartbeat "
        f"(default {DEFAULT_HEARTBEAT_INTERVAL:g})",
    )
    add_retention_options(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no start and end lines on stderr")
    parser.set_defaults(func=run)


def _source_label(args: argparse.Namespace, url: str | None) -> str:
    if args.tls:
        return "tls"
    if args.demo:
        return "demo"
    if args.replay is not None:
        return f"replay:{args.replay.name}"
    return url or "ws"


async def _relay(client: Client, agent: Agent) -> None:
    async for message in client:
        if isinstance(message, Event):
            agent.publish_event(message)
        elif isinstance(message, RunLog):
            agent.publish_log(message.line)
        # the server's heartbeats are about its WebSocket connection: the agent sends its own


async def _run_tls(args: argparse.Namespace, agent: Agent, stop: asyncio.Event) -> None:
    # The capture of ecaptureq tls, unchanged: its checks, its options and its exit codes.
    from ecaptureq.cli.tls import (
        capture_error,
        check_capture_options,
        describe_capture,
        make_capture,
        preflight,
    )
    from ecaptureq.sources.tls import CaptureError, banner

    check_capture_options(args)
    preflight()
    capture = make_capture(args, agent)
    for line in banner():
        agent.publish_log(line)
    try:
        await asyncio.to_thread(capture.start)
    except CaptureError as exc:
        raise capture_error(exc) from None
    print(
        f"ecaptureq agent: capturing {describe_capture(capture)} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(capture.stop)


def _default_spool(node: str) -> Path:
    if os.geteuid() == 0 and Path(DEFAULT_SPOOL_DIR).parent.is_dir():
        Path(DEFAULT_SPOOL_DIR).mkdir(mode=0o700, exist_ok=True)
        return Path(DEFAULT_SPOOL_DIR) / f"spool-{node}.db"
    return Path(f"ecaptureq-spool-{node}.db")


async def _drained(agent: Agent, publishing: asyncio.Task[None], timeout: float) -> bool:
    """Wait until the spool is empty (``False`` when ``timeout`` ran out first); the publisher's own error
    (a spool it cannot write or read, refused credentials) raised as soon as it fails meanwhile."""
    drained = asyncio.ensure_future(agent.wait_drained(timeout))
    try:
        await asyncio.wait({drained, publishing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not drained.done():
            drained.cancel()
    if publishing.done():
        publishing.result()  # its error
        return False  # it ended: nothing more is published
    return drained.result()


async def run_agent(args: argparse.Namespace) -> ExitCode:
    """Run the agent until its source ends or a signal; return the exit code."""
    try:
        node = check_node(args.node) if args.node else default_node()
    except BadNodeName as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    if args.count is not None and args.count <= 0:
        raise CliError("--count must be positive")
    options = nats_options_from_args(
        args, args.nats, name=f"ecaptureq-agent-{node}", inbox_prefix=f"_INBOX_{node}"
    )
    client: Client | None = None
    source_task: Any
    if args.source is not None:
        from ecaptureq.cli.watch import status_printer  # the relay's: watch's decoding only then

        try:
            client = Client(args.source, origin=args.origin or None, reconnect=True,
                            on_status=status_printer("agent"),
                            **client_security_kwargs(args, args.source, "agent"))  # fmt: skip
        except BadURL as exc:
            raise CliError(str(exc)) from None
    recording = None
    if args.replay is not None:
        try:
            recording = load_recording(args.replay)
        except ReplayError as exc:
            raise replay_error(exc) from None
    spool_path = args.spool or _default_spool(node)
    try:
        spool = Spool(spool_path, args.spool_size)
    except SpoolError as exc:
        raise CliError(str(exc), ExitCode.STORAGE) from None
    label = _source_label(args, client.display_url if client else None)
    agent = Agent(
        options,
        node,
        label,
        spool,
        retention=retention_from_args(args),
        heartbeat_interval=args.heartbeat_interval,
        on_notice=lambda notice: warn("agent", agent_notice(notice)),
    )
    if spool.stats.queued and not args.quiet:
        warn("agent", f"{spool.stats.queued} messages left in {spool_path} by a previous run are sent first")

    life = Lifecycle().open()
    if args.demo:
        from ecaptureq.sources.demo import DemoSource  # h2 and h11 for its traffic: only when it runs

        source_task = life.start(DemoSource(interval=args.interval, limit=args.count).run(agent))
    elif recording is not None:
        source_task = life.start(ReplaySource(recording, speed=args.speed).run(agent))
    elif client is not None:
        source_task = life.start(_relay(client, agent))
    else:
        source_task = life.start(_run_tls(args, agent, life.stop))
    publishing = life.start(agent.run())
    if not args.quiet:
        print(f"ecaptureq agent: node {node}, source {label}, spool {spool_path}, NATS {options.display}",
              file=sys.stderr, flush=True)  # fmt: skip
    code = ExitCode.OK
    try:
        done = await life.wait(publishing, source_task)  # publishing's NatsAuthError, SpoolError first
        if source_task not in done and args.tls:
            # stopping: the capture detaches and publishes its totals line, which is drained too
            await asyncio.wait({source_task, publishing}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        elif source_task not in done:
            source_task.cancel()
            await asyncio.gather(source_task, return_exceptions=True)
        if source_task.done() and not source_task.cancelled():
            source_task.result()  # the source's own errors (capture, connection)
        if not await _drained(agent, publishing, args.drain_timeout):
            code = ExitCode.INCOMPLETE
            warn(
                "agent",
                f"{spool.stats.queued} messages are still in {spool_path}; they are sent on the next start",
            )
    except ConnectError as exc:
        raise connect_error(exc, "--source") from None
    except FleetError as exc:
        raise fleet_error(exc) from None
    except SpoolError as exc:
        raise CliError(str(exc), ExitCode.STORAGE) from None
    finally:
        await life.close()
        if client is not None:
            await client.close()
        await agent.close()
        with contextlib.suppress(SpoolError):
            spool.close()
    st, ss = agent.stats, spool.stats
    if not args.quiet:
        print(
            f"ecaptureq agent: {st.published} messages published ({st.duplicates} re-publishes recognised), "
            f"{ss.queued} still spooled, {ss.overflowed} dropped by a full spool",
            file=sys.stderr,
        )
    return code


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq agent``."""
    tune_gc()  # before the source starts: a replay's recording is loaded whole
    return run_event_loop(run_agent(args))
