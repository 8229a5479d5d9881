"""``ecaptureq query --db FILE SQL``: the eCaptureQ GUI's SQL over a capture database, read-only."""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Final, TextIO

from ecaptureq.cli.errors import CliError, ExitCode, command_exit_codes, database_error
from ecaptureq.cli.render import endpoint, plural
from ecaptureq.cli.terminal import json_line, visible
from ecaptureq.protocol import event_type_name
from ecaptureq.protocol.jsonl import EVENT_RANGES
from ecaptureq.protocol.timestamps import detect_timestamp
from ecaptureq.store import (
    QUERY_SECONDS,
    Deadline,
    QueryTimeout,
    SqlError,
    open_readonly,
    run_query,
)
from ecaptureq.store.export import b64
from ecaptureq.store.sql import is_full_query

EXAMPLES = """\
examples (the GUI's two modes: a condition on packets, or a full SELECT):
  ecaptureq query --db capture.db "dst_port = 443 AND pname = 'curl'"
  ecaptureq query --db capture.db "src_ip LIKE '10.0.%'"
  ecaptureq query --db capture.db "payload_utf8 LIKE '%password%'" --json
  ecaptureq query --db capture.db "index > 100"
  ecaptureq query --db capture.db "SELECT pname, count(*) FROM packets GROUP BY pname"
  ecaptureq query --db capture.db "SELECT method, url, status, latency FROM exchanges" --csv
  ecaptureq query --db capture.db "SELECT uuid FROM packets WHERE type = 1
                                   UNION SELECT uuid FROM packets WHERE type = 3"

A bare condition shows compact columns (index, time, process, endpoints, type, length and the start of
the payload) and a row count; --wide shows every column of packets, as --json and --csv always do.

Tables: packets (the GUI's columns), exchanges (decoded HTTP), run_logs, connections, heartbeats.
The database is opened read-only. Binary cells are shown as x'hex…' in the table, base64 in JSON and CSV.

Limits: each query stops after --timeout seconds (default 10), and no value may grow beyond 32 MiB
(printf('%.*c', 999999999, 'x') is refused, not computed).

""" + command_exit_codes(
    (
        (ExitCode.OK, "done"),
        (ExitCode.USAGE, "invalid SQL, no such file, or the query hit a limit (--timeout)"),
        (ExitCode.STORAGE, "not a capture database (another program's SQLite file: it has no packets table)"),
    )
)

_CELL = 60


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``query`` subcommand."""
    parser = sub.add_parser(
        "query",
        help="run the eCaptureQ GUI's SQL (a condition or a SELECT) over a capture database",
        description="Query a capture database read-only: a bare condition is applied to packets, "
        "a SELECT (UNION included) runs as it is.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", type=Path, required=True, metavar="FILE", help="the capture database")
    parser.add_argument("sql", metavar="SQL", help="a condition on packets, or a full SELECT")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per row")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    parser.add_argument("--limit", type=int, metavar="N", help="stop after N rows")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="with a bare condition, show every column of packets (default: compact columns)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=QUERY_SECONDS,
        metavar="S",
        help=f"stop a query that runs longer than S seconds, with exit code 2 (default {QUERY_SECONDS:g})",
    )
    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _json_cell(value: Any) -> Any:
    return b64(value) if isinstance(value, bytes) else value


def _table_cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        text = "x'" + value[: _CELL // 2].hex() + ("…'" if len(value) > _CELL // 2 else "'")
    else:
        text = str(value)
    text = visible(text, newlines=False)
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


COMPACT_COLUMNS = ("index", "time", "process", "endpoints", "type", "length", "payload")
"""The table columns of a bare condition without ``--wide``."""
_PREVIEW = 40


_COMPACT_NEEDS: Final = frozenset(
    {"index", "timestamp", "pname", "pid", "src_ip", "src_port", "dst_ip", "dst_port", "type", "length"}
    | {"is_binary", "payload_utf8", "payload_binary"}
)
"""The ``packets`` columns the compact view is made of (a table without them is shown as it is)."""


def _time(value: Any) -> str:
    """A timestamp cell as a date (by its magnitude), or as the cell it is when it is no integer."""
    _, low, high = EVENT_RANGES["timestamp"]
    if type(value) is not int or not low <= value <= high:
        return _table_cell(value)
    ts = detect_timestamp(value or 0).isoformat()
    return ts[:23].replace("T", " ") if ts[:1].isdigit() else ts


def _endpoint(ip: Any, port: Any) -> str:
    if not isinstance(ip, str | None) or not isinstance(port, int | None):
        return f"{_table_cell(ip)}:{_table_cell(port)}"  # not what the schema stores: shown as it is
    return endpoint(ip or "", port or 0)


def _compact(columns: list[str], rows: Iterator[tuple[Any, ...]]) -> Generator[tuple[Any, ...], None, None]:
    """The rows of ``packets`` (all its columns) as :data:`COMPACT_COLUMNS`. A cell of another type than
    the schema's (a database another program wrote) is shown as it is, never taken for what it is not."""
    at = {name: i for i, name in enumerate(columns)}
    for row in rows:
        payload = row[at["payload_utf8"]] if not row[at["is_binary"]] else row[at["payload_binary"]]
        if isinstance(payload, str) and len(payload) > _PREVIEW:
            payload = payload[: _PREVIEW - 1] + "…"
        elif isinstance(payload, bytes):
            payload = payload[: _PREVIEW // 2]
        kind = row[at["type"]]
        yield (
            row[at["index"]],
            _time(row[at["timestamp"]]),
            f"{row[at['pname']] or '?'}[{row[at['pid']]}]",
            f"{_endpoint(row[at['src_ip']], row[at['src_port']])} -> "
            f"{_endpoint(row[at['dst_ip']], row[at['dst_port']])}",
            event_type_name(kind or 0) if isinstance(kind, int | None) else kind,
            row[at["length"]],
            payload,
        )


def run(args: argparse.Namespace) -> ExitCode:
    """Entry point of ``ecaptureq query``."""
    try:
        conn = open_readonly(args.db)
    except SqlError as exc:  # NotCaptureDatabase and DamagedDatabase are SqlErrors
        raise database_error(exc) from None
    deadline = Deadline(conn, args.timeout).start()
    opened: list[Generator[tuple[Any, ...], None, None]] = []
    try:
        columns, rows = run_query(conn, args.sql, args.timeout)
        if isinstance(rows, Generator):
            opened.append(rows)
        compact = set(columns) >= _COMPACT_NEEDS  # else another program's table: shown as it is
        if compact and not (args.wide or args.json or args.csv or is_full_query(args.sql.strip())):
            rows = _compact(columns, rows)
            opened.insert(0, rows)
            columns = list(COMPACT_COLUMNS)
        _print(args, columns, rows)
    except QueryTimeout as exc:
        raise CliError(f"{exc} (--timeout {exc.seconds:g}); narrow the query or raise --timeout") from None
    except SqlError as exc:
        raise CliError(str(exc)) from None
    finally:
        for gen in opened:  # a --limit leaves them unfinished: end them while the database is open
            with contextlib.suppress(SqlError):
                gen.close()
        deadline.cancel()
        conn.close()
    return ExitCode.OK


TABLE_BLOCK: Final = 1000
"""Rows of the table aligned together: the first block sets the columns' widths (its rows are held until
it is complete), and a later block widens a column where one of its cells is longer. Memory stays bounded
and rows appear as they come, however many the query yields; a query stopped by ``--timeout`` has shown
what it found."""


def _print_table(out: TextIO, columns: list[str], rows: Iterator[tuple[Any, ...]], limit: int | None) -> int:
    """Write ``rows`` as an aligned table under ``columns``; return how many were written."""
    names = [visible(c, newlines=False) for c in columns]
    widths = [len(c) for c in names]
    count = 0
    block: list[list[str]] = []
    rows_left = iter(rows)
    while True:
        block.clear()
        for row in rows_left:
            block.append([_table_cell(v) for v in row])
            if len(block) >= TABLE_BLOCK or (limit and count + len(block) >= limit):
                break
        widths = [max([w, *(len(r[i]) for r in block)]) for i, w in enumerate(widths)]
        if not count:
            out.write("  ".join(c.ljust(w) for c, w in zip(names, widths, strict=True)).rstrip() + "\n")
            out.write("  ".join("-" * w for w in widths) + "\n")
        for r in block:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
        count += len(block)
        out.flush()
        if len(block) < TABLE_BLOCK or (limit and count >= limit):
            return count


def _print(args: argparse.Namespace, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """Write the rows as JSON Lines, CSV or an aligned table, each row as it comes (the table a block of
    :data:`TABLE_BLOCK` rows at a time), then the row count for the table."""
    out = sys.stdout
    count = 0
    if args.json:
        for row in rows:
            out.write(json_line(dict(zip(columns, map(_json_cell, row), strict=True))) + "\n")
            count += 1
            if args.limit and count >= args.limit:
                break
    elif args.csv:
        writer = csv.writer(out)
        # CSV is data; on a terminal its captured text still gets its control characters shown
        shown = visible if out.isatty() else str
        writer.writerow([shown(c) for c in columns])
        for row in rows:
            writer.writerow([shown(v) if isinstance(v, str) else _json_cell(v) for v in row])
            count += 1
            if args.limit and count >= args.limit:
                break
    else:
        count = _print_table(out, columns, rows, args.limit)
        out.write(
            f"({plural(count, 'row')}{' shown: --limit' if args.limit and count >= args.limit else ''})\n"
        )
