#!/usr/bin/env python3
"""Summarises bench/ab.sh output: per isolation mode and transport, the B/A
ratio of server CPU per execution and of throughput, round by round, with
the median and the spread (min-max) of the rounds; then, for each build,
process / in-process (throughput, CPU per execution, p99) and HTTP /
WebSocket throughput, the ratios of runs of the same round.

    bash bench/ab.sh A B 5 8 | tee out.txt; python3 bench/ab_ratio.py out.txt
"""
import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(
    r"^(?P<label>[AB]) (?P<isolation>\S+)\s+(?P<transport>ws|http)?\s*"
    r"(?P<rate>[\d.]+) executions/s.*p99 (?P<p99>[\d.]+) µs.*server CPU (?P<cpu>[\d.]+) µs/execution"
)


def spread(values, fmt="{:.2f}"):
    """The median, and the lowest and highest round."""
    return (
        fmt.format(statistics.median(values))
        + " (rounds "
        + fmt.format(min(values))
        + "-"
        + fmt.format(max(values))
        + ")"
    )

def main(path):
    runs = defaultdict(lambda: defaultdict(list))  # (isolation, transport) -> label -> [(rate, cpu)]
    for line in open(path, encoding="utf-8"):
        m = LINE.match(line.strip())
        if m:
            key = (m["isolation"], m["transport"] or "ws")
            runs[key][m["label"]].append((float(m["rate"]), float(m["cpu"]), float(m["p99"])))
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
    for label in "AB":
        for transport in ("ws", "http"):
            inproc = runs.get(("in-process", transport), {}).get(label, [])
            process = runs.get(("process", transport), {}).get(label, [])
            pairs = list(zip(inproc, process))
            if not pairs:
                continue
            print(
                f"{label} process / in-process, {transport:4}: throughput "
                + spread([p[0] / i[0] for i, p in pairs])
                + ", CPU per execution "
                + spread([p[1] / i[1] for i, p in pairs])
                + ", p99 "
                + spread([p[2] / i[2] for i, p in pairs])
            )
        for isolation in ("in-process", "process"):
            ws = runs.get((isolation, "ws"), {}).get(label, [])
            http = runs.get((isolation, "http"), {}).get(label, [])
            pairs = list(zip(ws, http))
            if pairs:
                print(
                    f"{label} HTTP / WebSocket throughput, {isolation}: "
                    + spread([h[0] / w[0] for w, h in pairs])
                )

if __name__ == "__main__":
    main(sys.argv[1])
