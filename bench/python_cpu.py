"""CPU-bound Python nodes: 24 executions of a plain `def execute` doing
about 0.1 s of pure-Python work each, 8 in flight, sent over the WebSocket
to nanograph-sdk 0.2.3 and to nano-server (with `[python] workers` = each of
--workers), serving the same project. Prints the wall time of each and its
ratio to the SDK's. Under the SDK every sync node runs in one process under
one GIL; nano-server's workers are processes of their own.

    python3 bench/python_cpu.py --sdk-python bench/peer/.venv/bin/python \
        --server target/release/nano-server [--workers 1 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))

import differential  # noqa: E402  (its NodeServer and WebSocket client)

NODE = """
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'cpu-burn', 'name': 'CPU Burn', 'category': 'Bench', 'version': '1.0.0',
    'description': 'about 0.1 s of pure-Python work', 'inputs': [], 'outputs': [], 'parameters': []})

def execute(ctx):
    total = 0
    for i in range(%d):
        total += i * i %% 7
    return {'total': [total]}

node['execute'] = execute
"""


def iterations_for(seconds: float, python: str) -> int:
    """How many loop turns take `seconds` in `python`, measured once."""
    probe = "import time\nt=time.perf_counter()\ntotal=0\nfor i in range(2000000): total += i * i % 7\nprint(time.perf_counter()-t)"
    taken = float(subprocess.check_output([python, "-c", probe], text=True))
    return int(2_000_000 * seconds / taken)


def project(iterations: int, workers: int | None) -> str:
    root = os.path.join(tempfile.mkdtemp(prefix="nano-cpu-"), "project")
    os.makedirs(os.path.join(root, "nodes", "bench", "burn"))
    config = {"serverUid": "cpu-bench", "serverPackageId": "cpu-bench", "serverDisplayName": "CPU bench",
              "language": "python", "nodesPath": "nodes",
              "autoWatch": False}
    if workers not in (None, 1):  # 1 is the default
        config["python"] = {"workers": workers}
    with open(os.path.join(root, "nanoserver.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(root, "nodes", "bench", "burn", "node.py"), "w") as f:
        f.write(NODE % iterations)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files + ["."]:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~0o022)
    return root


def run(server: "differential.NodeServer", total: int = 24, in_flight: int = 8) -> float:
    """Wall time of `total` executions with `in_flight` at once."""
    sent = done = 0
    started = time.perf_counter()

    def send(n: int) -> None:
        server.ws.send({"type": "request_execution", "serverUid": "bench", "instanceId": f"cpu-{n}",
                        "payload": {"nodeId": n, "nodeUid": "cpu-burn", "inputs": {},
                                    "graphNode": {"id": n, "parameters": [], "x": 0, "y": 0}}})

    while sent < in_flight:
        send(sent)
        sent += 1
    while done < total:
        try:
            message = server.ws.messages.get(timeout=120)
        except queue.Empty:
            raise RuntimeError("no answer in 120 s") from None
        if message is None:
            raise RuntimeError("the server closed the connection")
        status = message.get("payload", {}).get("status", {}) if message.get("type") == "node_status" else {}
        if status.get("type") == "error":
            raise RuntimeError(f"an execution failed: {status}")
        if status.get("type") == "complete":
            done += 1
            if sent < total:
                send(sent)
                sent += 1
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdk-python", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    iterations = iterations_for(0.1, args.sdk_python)
    print(f"{iterations} loop turns per execution (0.1 s measured alone); 24 executions, 8 in flight; "
          f"{os.cpu_count()} cores", flush=True)
    results: dict = {}
    for round_ in range(1, args.rounds + 1):
        for name, workers in [("sdk", None)] + [(f"nano-server workers={w}", w) for w in args.workers]:
            root = project(iterations, workers)
            try:
                if workers is None:
                    server = differential.sdk_server(args.sdk_python, root)
                else:
                    server = differential.nano_server(args.server, root, args.sdk_python)
                try:
                    seconds = run(server)
                finally:
                    server.close()
            finally:
                shutil.rmtree(os.path.dirname(root), ignore_errors=True)
            results.setdefault(name, []).append(seconds)
            print(f"round {round_} {name}: {seconds:.2f} s")
    sdk = sorted(results["sdk"])[len(results["sdk"]) // 2]
    for name, times in results.items():
        median = sorted(times)[len(times) // 2]
        print(f"median {name}: {median:.2f} s, {sdk / median:.2f}x the SDK's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
