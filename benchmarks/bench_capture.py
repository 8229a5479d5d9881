"""Benchmark the eBPF TLS capture under load (needs root): ``sudo python benchmarks/bench_capture.py``.

Every workload runs against nginx on 127.0.0.1 (bodies of random bytes, known sha256) in three ways,
in the same run, ``--repeat`` times each (the fastest run of each way is reported):

- **no capture**: the baseline;
- **empty probes**: bpftrace with empty uprobes on the entry of ``SSL_write``, ``SSL_read``,
  ``SSL_write_ex``, ``SSL_read_ex`` and the return of the two reads: the cost of the trap alone (the
  floor no uprobe-based capture can go under);
- **ecaptureq tls**: ``ecaptureq tls --json`` with default options (no filter: it captures every
  process on the host, the servers included), its output in a file; afterwards every body each client
  read (or the blob it wrote) is compared by sha256 with what was sent, and the gaps the capture
  announced for those clients are counted. Its CPU time (user+system, after start-up) and peak RSS
  come from ``wait4``.

Rows: 1,000 keep-alive 1 KB requests from one Python client; 50 parallel curls x 20 keep-alive
requests of 100 KB and of 1 MB; one curl fetching 10 x 10 MB (HTTP/1.1) and with ``--http2``; one
40 MB ``sendall``. Nothing here asserts on time; the goals are printed beside the ratios.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ecaptureq.bench.consumers import tree_cpu_seconds
from ecaptureq.bench.tlsload import Captured, Run, Site, Verdict, verify
from ecaptureq.protocol.gap import parse_gap
from ecaptureq.sources.tls import DEFAULT_BUFFER_MIB, find_libssl

FLOOR_PROBES = (
    "uprobe:{lib}:SSL_write {{}} uprobe:{lib}:SSL_read {{}} uprobe:{lib}:SSL_write_ex {{}} "
    "uprobe:{lib}:SSL_read_ex {{}} uretprobe:{lib}:SSL_read {{}} uretprobe:{lib}:SSL_read_ex {{}}"
)
RING_MAPPING_MIB = 2 * DEFAULT_BUFFER_MIB
"""The consumer maps the ring buffer's data twice (wrap-around); the kernel maps every page at once."""


@dataclass
class Row:
    """The measurements of one workload."""

    name: str
    goal: str = ""
    base: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    capture: list[float] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    cpu: list[float] = field(default_factory=list)
    rss_mib: float = 0.0


class Bpftrace:
    """bpftrace with empty probes on the SSL calls, attached until :meth:`stop`."""

    def __init__(self, libssl: str) -> None:
        self.proc = subprocess.Popen(
            ["bpftrace", "-e", FLOOR_PROBES.format(lib=libssl)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.proc.stdout:
            if line.startswith("Attaching"):
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("bpftrace exited before attaching")
        time.sleep(0.5)  # "Attaching N probes" is printed before the attach calls return

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=60)


class Capture:
    """``ecaptureq tls --json`` writing into ``out`` until :meth:`stop` (returns CPU s, peak RSS MiB)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.file = out.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ecaptureq", "tls", "--json"],
            stdout=self.file, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "capturing" not in line:
            raise RuntimeError(f"ecaptureq tls did not start: {line}{self.proc.stderr.read()}")
        self.start_cpu = tree_cpu_seconds(self.proc.pid)  # its governor too, as wait4 counts it at the end

    def stop(self) -> tuple[float, float]:
        # Peak RSS from the process itself: wait4's ru_maxrss also counts the parent's RSS at fork time.
        status_text = Path(f"/proc/{self.proc.pid}/status").read_text()
        peak_kib = int(status_text.split("VmHWM:", 1)[1].split()[0])
        self.proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.file.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"ecaptureq tls exited {self.proc.returncode}")
        return usage.ru_utime + usage.ru_stime - self.start_cpu, peak_kib / 1024


def read_capture(path: Path, pids: set[int]) -> tuple[Captured, str]:
    """The streams and gaps of ``pids`` in an ``ecaptureq tls --json`` output, and its last log line."""
    captured = Captured()
    last = ""
    with path.open("rb") as f:
        for raw in f:
            record = json.loads(raw)
            if record.get("kind") == "log":
                last = record["run_log"]
                gap = parse_gap(last)
                if gap is not None:
                    captured.add_gap(gap)
            elif record.get("pid") in pids:
                captured.add_event(record["pid"], record["uuid"], base64.b64decode(record["payload"]))
    return captured, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each workload each way (default 3)")
    parser.add_argument("--only", metavar="NAME", help="run only the rows whose name contains NAME")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_capture: needs root (eBPF)", file=sys.stderr)
        return 5
    for tool in ("nginx", "curl", "bpftrace"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"bench_capture: {tool} not found (scripts/setup-test installs it)", file=sys.stderr)
            return 1
    libssl = find_libssl()
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    with Site() as site, tempfile.TemporaryDirectory(dir=scratch, prefix="bench-capture-") as tmp:
        workloads: list[tuple[Row, Callable[[], Run]]] = [
            (Row("1,000 keep-alive 1 KB requests (Python)", "<= 1.15x floor"),
             lambda: site.keepalive("1k", 1000)),
            (Row("50 curls x 20 keep-alive, 100 KB"), lambda: site.curls("100k", clients=50, requests=20)),
            (Row("50 curls x 20 keep-alive, 1 MB"), lambda: site.curls("1m", clients=50, requests=20)),
            (Row("1 curl 10 x 10 MB, HTTP/1.1", "<= 2x no capture"),
             lambda: site.curls("10m", clients=1, requests=10)),
            (Row("1 curl 10 x 10 MB, HTTP/2"), lambda: site.curls("10m", clients=1, requests=10, http2=True)),
            (Row("one 40 MB sendall (Python)"), lambda: site.sendall(40_000_000)),
        ]  # fmt: skip
        rows = []
        for row, work in workloads:
            if args.only and args.only not in row.name:
                continue
            print(f"bench_capture: {row.name} ...", file=sys.stderr, flush=True)
            work()  # warm up (page cache, nginx worker)
            for i in range(args.repeat):
                row.base.append(work().seconds)
                floor = Bpftrace(libssl)
                try:
                    row.floor.append(work().seconds)
                finally:
                    floor.stop()
                out = Path(tmp) / f"capture-{i}.jsonl"
                cap = Capture(out)
                try:
                    run = work()
                finally:
                    cpu, rss = cap.stop()
                row.capture.append(run.seconds)
                row.cpu.append(cpu)
                row.rss_mib = max(row.rss_mib, rss)
                captured, _last = read_capture(out, {e.pid for e in run.expect})
                row.verdict.add(verify(captured, run.expect))
                out.unlink()
            rows.append(row)
    print_table(rows)
    return 0


def print_table(rows: list[Row]) -> None:
    header = (
        "workload",
        "no capture s",
        "empty probes s",
        "ecaptureq tls s",
        "tls/none",
        "tls/floor",
        "bodies exact",
        "gaps (bytes)",
        "tls CPU s",
        "tls RSS MiB",
        "goal",
    )
    lines = []
    for r in rows:
        base, floor, cap = min(r.base), min(r.floor), min(r.capture)
        v = r.verdict
        lines.append(
            (
                r.name,
                f"{base:.3f}",
                f"{floor:.3f} ({floor / base:.2f}x)",
                f"{cap:.3f}",
                f"{cap / base:.2f}x",
                f"{cap / floor:.2f}x",
                f"{v.exact}/{v.total} ({100 * v.exact / max(v.total, 1):.1f}%)"
                + (f", {v.damaged_unmarked} unmarked!" if v.damaged_unmarked else ""),
                f"{v.gaps} ({v.gap_bytes})",
                f"{min(r.cpu):.2f}",
                f"{r.rss_mib - RING_MAPPING_MIB:.0f} + {RING_MAPPING_MIB} ring",
                r.goal,
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    print(
        "\ntimes: fastest of the runs each way, all in this run; bodies exact: sha256 of every body each "
        "client read (or the blob it wrote), over all capture runs; tls CPU: user+system after start-up, "
        "fastest run; tls RSS: peak, its own + the ring buffer's mapping (its pages are counted twice)."
    )


if __name__ == "__main__":
    sys.exit(main())
