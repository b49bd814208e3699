#!/usr/bin/env python3
"""Summarises bench/ab.sh output: per isolation mode and transport, the B/A
ratio of server CPU per execution and of throughput, round by round, with
the median and the spread (min-max) of the rounds.

    bash bench/ab.sh A B 5 8 | tee out.txt; python3 bench/ab_ratio.py out.txt
"""
import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(
    r"^(?P<label>[AB]) (?P<isolation>\S+)\s+(?P<transport>ws|http)?\s*"
    r"(?P<rate>[\d.]+) executions/s.*server CPU (?P<cpu>[\d.]+) µs/execution"
)

def main(path):
    runs = defaultdict(lambda: defaultdict(list))  # (isolation, transport) -> label -> [(rate, cpu)]
    for line in open(path, encoding="utf-8"):
        m = LINE.match(line.strip())
        if m:
            key = (m["isolation"], m["transport"] or "ws")
            runs[key][m["label"]].append((float(m["rate"]), float(m["cpu"])))
    for (isolation, transport), by in sorted(runs.items()):
        pairs = list(zip(by["A"], by["B"]))
        if not pairs:
            continue
        cpu = [b[1] / a[1] for a, b in pairs]
        rate = [b[0] / a[0] for a, b in pairs]
        print(
            f"{isolation:10} {transport:4} B/A server CPU per execution: "
            + " ".join(f"{r:.3f}" for r in cpu)
            + f" (median {statistics.median(cpu):.3f}, spread {min(cpu):.3f}-{max(cpu):.3f}); "
            + f"B/A throughput median {statistics.median(rate):.3f}; "
            + f"A CPU median {statistics.median(a[1] for a, _ in pairs):.1f} µs, "
            + f"B CPU median {statistics.median(b[1] for _, b in pairs):.1f} µs"
        )

if __name__ == "__main__":
    main(sys.argv[1])
