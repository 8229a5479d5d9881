"""What recording a decompression or amplification bomb costs: database bytes and peak RSS per exchange.

    python benchmarks/bench_bombs.py

Each exchange of the bomb corpus (gzip, nested gzip, br, zstd, deflate bodies that expand to 16 MiB, a
text body of control characters, form bodies of millions of fields) is replayed by ``ecaptureq serve
--replay`` into its own ``ecaptureq record`` process. The table shows its wire bytes, the database bytes it
added (beyond an empty database), the budget (twice the wire bytes plus 64 KiB), and the record process's
peak RSS beside the baseline row measured in the same run (a small plain JSON exchange).
"""

from __future__ import annotations

from ecaptureq.bench.bombs import format_table, measure_corpus


def main() -> None:
    """Measure the corpus and print the table."""
    print(format_table(measure_corpus()))


if __name__ == "__main__":
    main()
