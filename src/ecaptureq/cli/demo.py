"""``ecaptureq demo``: the demo source on a free loopback port, watched in the same process."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ecaptureq.cli.errors import CliError, ExitCode
from ecaptureq.cli.render_http import HttpView, add_decode_options
from ecaptureq.cli.runtime import run_event_loop
from ecaptureq.cli.terminal import warn
from ecaptureq.cli.watch import add_watch_options, consume, printer_from_args
from ecaptureq.client import Client, Connected, ConnectError, ConnectionLost, Status
from ecaptureq.protocol.banner import startup_banner
from ecaptureq.server import Server
from ecaptureq.sources.demo import DemoSource

EXAMPLES = """\
examples:
  ecaptureq demo                       # until Ctrl-C
  ecaptureq demo --count 20            # exit after 20 events
  ecaptureq demo --json --count 100 > demo.jsonl   # a recording for: ecaptureq serve --replay demo.jsonl
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` subcommand."""
    parser = sub.add_parser(
        "demo",
        help="see ecaptureq at work: the demo source served and watched in one process",
        description="Serve synthetic HTTP/1.1 and HTTP/2 traffic on a free loopback port and watch it "
        "through a real WebSocket connection, as `watch` would show real eCapture. No root needed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_watch_options(parser)
    add_decode_options(parser)
    parser.add_argument(
        "--interval", type=float, default=0.5, metavar="S", help="seconds between exchanges (default 0.5)"
    )
    parser.set_defaults(func=run)


async def demo(args: argparse.Namespace) -> ExitCode:
    """Run the demo: server, source and watcher on one event loop."""
    view = HttpView.from_args(args)  # a bad --grep ends here
    async with Server("127.0.0.1", 0) as server:
        for line in startup_banner("demo", listen_url=server.url):
            server.publish_log(line)
        source = DemoSource(interval=args.interval)
        feed: list[asyncio.Task[None]] = []

        def start_feed(status: Status) -> None:
            # Start the traffic once the watcher is connected, so it sees the very first event.
            if isinstance(status, Connected) and not feed:
                feed.append(asyncio.get_running_loop().create_task(source.run(server)))

        client = Client(
            server.url, on_malformed=lambda err: warn("demo", f"skipped {err}"), on_status=start_feed
        )
        try:
            return await consume(
                aiter(client),
                printer_from_args(args, sys.stdout, view),
                args.count,
                args.timeout,
                "demo",
            )
        except (ConnectError, ConnectionLost) as exc:
            raise CliError(str(exc), ExitCode.CONNECTION) from None
        finally:
            for task in feed:
                task.cancel()
            await client.close()


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq demo``."""
    if args.interval < 0:
        raise CliError("--interval must be 0 or positive")
    return run_event_loop(demo(args))
