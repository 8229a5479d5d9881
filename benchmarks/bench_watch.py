"""What hooking everything costs processes that do no TLS at all (needs root).

``python benchmarks/bench_watch.py [--runs N] [--count N]``

The exec watcher adds programs that run for every process on the host: a raw tracepoint on every syscall
exit (it looks for ``mmap(PROT_EXEC)``, unless the kernel lets it use the ``mmap_file`` LSM hook instead)
and one on every exec. This measures, in one run, a syscall-heavy process that does no TLS (``dd``
copying 1-byte blocks: two syscalls per block) and an exec-heavy one (``/bin/true`` started N times):

- without capture (the baseline);
- with ``ecaptureq tls --libssl <system libssl>`` (one file, no watcher: the capture's own floor);
- with ``ecaptureq tls`` (every TLS library found, plus the exec watcher).

Prints the minimum of ``--runs`` interleaved runs of each and the ratios. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ecaptureq.protocol import Event
from ecaptureq.sources.tls import TlsCapture, find_libssl


class _Null:
    def publish_log(self, line: str) -> None:
        pass

    def publish_event(self, event: Event) -> None:
        pass


def _dd(count: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={count}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _execs(count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(["/bin/true"], check=True)
    return time.perf_counter() - start


def main() -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (the minimum is kept)")
    parser.add_argument("--count", type=int, default=1_000_000, help="dd blocks (1 byte each)")
    parser.add_argument("--execs", type=int, default=300, help="executions of /bin/true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_watch: needs root", file=sys.stderr)
        return 5
    modes: list[tuple[str, str | list[str] | None]] = [
        ("no capture", "none"),
        ("tls --libssl (one file)", [find_libssl()]),
        ("tls (everything + watcher)", None),
    ]
    # Interleaved (each run goes through every mode in turn) so load from elsewhere hits all modes alike.
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in modes}
    for _ in range(args.runs):
        for name, libssl in modes:
            capture = None
            if libssl != "none":
                capture = TlsCapture(_Null(), libssl=libssl)  # type: ignore[arg-type]
                capture.start()
            try:
                times[name][0].append(_dd(args.count))
                times[name][1].append(_execs(args.execs))
            finally:
                if capture is not None:
                    capture.stop()
    rows = [(name, min(times[name][0]), min(times[name][1])) for name, _ in modes]
    base_dd, base_ex = rows[0][1], rows[0][2]
    print(f"{'mode':<28} {'dd ' + str(args.count) + ' x 1 B (s)':>22} {'ratio':>6} "
          f"{str(args.execs) + ' execs (s)':>16} {'ratio':>6}")  # fmt: skip
    for name, dd, ex in rows:
        print(f"{name:<28} {dd:>22.3f} {dd / base_dd:>6.2f} {ex:>16.3f} {ex / base_ex:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
