"""Memory of a 50-node Python project, and the time from an edit to live.

The same project (50 trivial `node.py` files, each in its own folder, the
SDK's layout) is served by nanograph-sdk 0.2.3 and by nano-server in each
`[python] group` mode. For each: the resident memory (RSS, and the
proportional PSS where the kernel gives it) of the server and all its
worker processes together, once every node has run once; and for
nano-server, the time from rewriting one node.py to the first execution
that answers with the new code (the debounce, 100 ms here, included).

    python3 bench/python_rss.py --sdk-python bench/peer/.venv/bin/python \
        --server target/release/nano-server [--nodes 50] [--edits 5]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))

import differential  # noqa: E402  (its NodeServer and WebSocket client)

NODE = """from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'n%(i)02d', 'name': 'Node %(i)d', 'category': 'Bench', 'version': '1.0.0',
    'description': 'a trivial node', 'inputs': [], 'outputs': [], 'parameters': []})


async def execute(ctx):
    return {'word': ['%(word)s'], 'pid': [__import__('os').getpid()]}

node['execute'] = execute
"""


def project(nodes: int, group: str | None) -> str:
    root = os.path.join(tempfile.mkdtemp(prefix="nano-rss-"), "project")
    config = {"serverUid": "rss-bench", "serverPackageId": "rss-bench", "serverDisplayName": "RSS bench",
              "language": "python", "nodesPath": "nodes", "autoWatch": True, "watchDebounceTime": 100}
    if group is not None:
        config["python"] = {"group": group}
    for i in range(nodes):
        folder = os.path.join(root, "nodes", "bench", f"n{i:02d}")
        os.makedirs(folder)
        with open(os.path.join(folder, "node.py"), "w") as f:
            f.write(NODE % {"i": i, "word": "v0"})
    with open(os.path.join(root, "nanoserver.json"), "w") as f:
        json.dump(config, f)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files + ["."]:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~0o022)
    return root


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_kib(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, processes) of `pid`'s tree, in KiB."""
    rss = pss = count = 0
    for member in tree(pid):
        try:
            with open(f"/proc/{member}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            count += 1
        except OSError:
            continue
    return rss, pss, count


def execute(server: "differential.NodeServer", number: int, uid: str) -> dict:
    server.ws.send({"type": "request_execution", "serverUid": "bench", "instanceId": f"rss-{number}",
                    "payload": {"nodeId": number, "nodeUid": uid, "inputs": {},
                                "graphNode": {"id": number, "parameters": [], "x": 0, "y": 0}}})
    while True:
        message = server.ws.messages.get(timeout=60)
        if message is None:
            raise RuntimeError("the server closed the connection")
        if message.get("type") != "node_status" or message.get("instanceId") != f"rss-{number}":
            continue
        status = message["payload"]["status"]
        if status.get("type") in ("complete", "error"):
            return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdk-python", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()
    stamp = subprocess.run(["bash", "-c", "source bench/stamp.sh && commit_stamp"], cwd=os.path.join(HERE, ".."),
                           capture_output=True, text=True).stdout.strip()
    print(stamp)
    print(f"{args.nodes} node.py files, each run once; RSS and PSS of the server and its workers together; "
          f"{os.cpu_count()} cores", flush=True)
    results = {}
    for name, group in [("sdk", None), ("library", "library"), ("pack", "pack"), ("project", "project")]:
        root = project(args.nodes, group)
        try:
            if group is None:
                server = differential.sdk_server(args.sdk_python, root)
            else:
                server = differential.nano_server(args.server, root, args.sdk_python)
            try:
                number = 0
                pids = set()
                for i in range(args.nodes):
                    number += 1
                    status = execute(server, number, f"n{i:02d}")
                    assert status["type"] == "complete", status
                    pids.add(status["outputs"]["pid"][0])
                rss, pss, count = memory_kib(server.process.pid)
                results[name] = (rss, pss)
                line = (f"{name:8} RSS {rss / 1024:7.1f} MiB  PSS {pss / 1024:7.1f} MiB  "
                        f"{count} processes, nodes answered from {len(pids)} interpreter(s)")
                if group is not None:
                    waits = []
                    path = os.path.join(root, "nodes", "bench", "n07", "node.py")
                    for edit in range(1, args.edits + 1):
                        word = f"v{edit}"
                        with open(path, "w") as f:
                            f.write(NODE % {"i": 7, "word": word})
                        started = time.perf_counter()
                        while True:
                            number += 1
                            status = execute(server, number, "n07")
                            if status["type"] == "complete" and status["outputs"]["word"] == [word]:
                                break
                            if time.perf_counter() - started > 60:
                                raise RuntimeError(f"edit {edit} never went live: {status}")
                            time.sleep(0.005)
                        waits.append((time.perf_counter() - started) * 1000)
                    line += (f"; edit to live: median {statistics.median(waits):.0f} ms "
                             f"(min {min(waits):.0f}, max {max(waits):.0f}, {len(waits)} edits)")
                print(line, flush=True)
            finally:
                server.close()
        finally:
            shutil.rmtree(os.path.dirname(root), ignore_errors=True)
    sdk_rss, sdk_pss = results["sdk"]
    print("# nano-server / SDK, server and workers together:")
    for name in ("library", "pack", "project"):
        rss, pss = results[name]
        print(f"#   {name:8} RSS {rss / sdk_rss:5.2f}x  PSS {pss / sdk_pss:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
