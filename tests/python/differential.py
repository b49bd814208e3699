"""The differential test of issue 21: the same executions, sent to the
published nanograph-sdk 0.2.3 and to nano-server serving the same SDK
project (tests/python/project, unchanged, from its nanoserver.json), must
give the same definitions and statuses (types, messages, progress, outputs,
error messages), except for the differences issue 21 asks for, which are
checked to be exactly those.

Both servers are the real things, driven over their WebSockets by a small
stdlib client: the SDK's own server (`sdk_runner.py`), and the nano-server
binary given with `--server`. The worker runtime alone is compared too,
through harness.py (the stand-in for the server's half of the worker
protocol). Each of ours runs twice: with the bundled SDK stand-in (this
interpreter) and with the installed SDK (the SDK's interpreter, which
nano-server finds as `python3` first on PATH).

    python3 tests/python/differential.py [--sdk-python /tmp/sdkvenv/bin/python] [--server target/release/nano-server]

Exit status 0 when everything matches.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.join(HERE, "project")
FINAL = ("complete", "error")

# (uid, inputs, graph-node parameters, abort after this many node statuses)
CASES: List[Tuple[str, Dict[str, Any], List[Dict[str, Any]], Optional[int]]] = [
    ("py-async-echo", {"text": ["hello"]}, [{"name": "uppercase", "value": True}], None),
    ("py-async-echo", {"text": ["as is"]}, [{"name": "uppercase", "value": False}], None),
    ("py-sync-sum", {"a": [2], "b": [40]}, [], None),
    ("py-progress", {}, [{"name": "steps", "value": 4}], None),
    ("py-init", {}, [], None),
    ("py-context", {}, [{"name": "label", "value": "mine"}], None),
    ("py-slug", {"text": ["Hello, Nano World!"]}, [], None),
    ("py-raise", {"value": ["x"]}, [], None),
    ("py-raise", {}, [], None),
    ("my-unique-python-node-id", {"input1": ["from the README"]}, [{"name": "param1", "value": False}], None),
    ("readme-progress", {}, [], None),
    ("py-own-complete", {}, [], None),
    ("py-sync-status", {}, [], None),
    ("py-abortable", {}, [], 1),
]


def expected_difference(uid: str, sdk: List[Dict[str, Any]], ours: List[Dict[str, Any]]) -> Optional[str]:
    """Why the SDK's statuses `sdk` and nano_worker's `ours` may differ for
    `uid` (issue 21's list), when they differ exactly that way; else None."""
    until, after = up_to_final(sdk)
    if uid == "py-own-complete" and until == ours and after:
        return f"one final status: the SDK sent {len(after)} more after the node's own complete, nano_worker none"
    if (
        uid == "py-sync-status"
        and until[-1] == {"type": "error", "message": "no running event loop"}
        and ours[-1]["type"] == "complete"
    ):
        return "send_status from a sync execute: the SDK fails (no running event loop), nano_worker forwards it"
    if (
        uid == "py-abortable"
        and until[:-1] == ours[:-1]
        and until[-1] == {"type": "error", "message": "Execution cancelled"}
        and ours[-1] == {"type": "error", "message": harness.ABORTED}
    ):
        return "abort: the native message `Execution aborted` instead of the SDK's `Execution cancelled`"
    return None


class WebSocket:
    """Just enough of a WebSocket client (RFC 6455) for the SDK's server:
    text frames out, masked; text frames in, on a reader thread."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"no WebSocket upgrade: {head!r}")
        self.sock.settimeout(None)
        self.messages: "queue.Queue[Any]" = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self._lock:
            self.sock.sendall(header + mask + masked)

    def send(self, message: Dict[str, Any]) -> None:
        self._frame(0x1, json.dumps(message).encode())

    def _read(self) -> None:
        parts = b""
        try:
            while True:
                first, second = self._exact(2)
                opcode, length = first & 0x0F, second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", self._exact(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", self._exact(8))
                payload = self._exact(length)
                if opcode == 0x9:
                    self._frame(0xA, payload)
                elif opcode == 0x8:
                    break
                elif opcode in (0x0, 0x1):
                    parts += payload
                    if first & 0x80:
                        self.messages.put(json.loads(parts.decode()))
                        parts = b""
        except (EOFError, OSError):
            pass
        self.messages.put(None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NodeServer:
    """A node server (the SDK's or nano-server) serving a copy of PROJECT,
    started by `command` with PORT set, and one WebSocket connection to it."""

    def __init__(self, name: str, command: List[str], cwd: str, env: Dict[str, str]):
        self.name = name
        self.port = free_port()
        env = dict(env, PORT=str(self.port))
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 120
        assert self.process.stdout is not None
        self.output: List[str] = []
        for line in self.process.stdout:
            self.output.append(line)
            if "[NANOSERVER_READY]" in line:
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError(f"{name} exited before it was ready:\n{''.join(self.output)}")
        if not self.output or "[NANOSERVER_READY]" not in self.output[-1]:
            raise RuntimeError(f"{name} did not start:\n{''.join(self.output)}")
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()  # type: ignore
        self.ws = WebSocket(self.port)
        self.handshake = self.ws.messages.get(timeout=10)

    def run(
        self,
        number: int,
        uid: str,
        inputs: Dict[str, Any],
        parameters: List[Dict[str, Any]],
        abort_after: Optional[int],
    ) -> List[Dict[str, Any]]:
        instance = f"diff-{number}"
        self.ws.send(
            {
                "type": "request_execution",
                "serverUid": "differential",
                "instanceId": instance,
                "payload": {
                    "nodeId": number,
                    "nodeUid": uid,
                    "inputs": inputs,
                    "graphNode": {
                        "id": number,
                        "parameters": parameters,
                        "x": 0,
                        "y": 0,
                        "serverUid": "py-differential",
                    },
                },
            }
        )
        statuses: List[Dict[str, Any]] = []
        deadline, linger = time.monotonic() + 30, None
        while True:
            timeout = (linger if linger is not None else deadline) - time.monotonic()
            try:
                message = self.ws.messages.get(timeout=max(0.0, timeout))
            except queue.Empty:
                if linger is not None:
                    return statuses
                raise RuntimeError(f"{uid}: no final status from {self.name}") from None
            if message is None:
                raise RuntimeError(f"{self.name} closed the connection")
            if message.get("type") != "node_status" or message.get("instanceId") != instance:
                continue
            statuses.append(message["payload"]["status"])
            if abort_after is not None and len(statuses) == 1 + abort_after:
                self.ws.send({"type": "stop_workflow_instance", "serverUid": "differential", "instanceId": instance})
            if message["payload"]["status"].get("type") in FINAL and linger is None:
                # Keep listening a moment: the SDK may send more after its final.
                linger = time.monotonic() + 0.4

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def sdk_server(python: str, project: str) -> NodeServer:
    """nanograph-sdk 0.2.3 serving `project` (its own runner, sdk_runner.py)."""
    env = dict(os.environ, NANOSDK_LOG_LEVEL="error")
    env.pop("PYTHONPATH", None)
    return NodeServer("the SDK", [os.path.abspath(python), os.path.join(HERE, "sdk_runner.py")], project, env)


def nano_server(binary: str, project: str, python: str) -> NodeServer:
    """nano-server serving `project` as is, from its nanoserver.json, with
    `python`'s folder first on PATH: the project has no `.venv`, so that
    folder's `python3` is the interpreter nano-server picks, as a user's
    would be."""
    path = os.path.dirname(os.path.abspath(python)) + os.pathsep + os.environ.get("PATH", "")
    env = dict(os.environ, PATH=path, RUST_LOG="warn")
    env.pop("PYTHONPATH", None)
    env.pop("NANO_SERVER_TOKEN", None)
    return NodeServer("nano-server", [os.path.abspath(binary), "--config", "nanoserver.json"], project, env)


def private_copy(project: str) -> str:
    """A copy of `project` that nano-server's trust checks accept whatever
    the checkout's umask was (no group- or world-writable file or folder)."""
    import shutil
    import tempfile

    target = os.path.join(tempfile.mkdtemp(prefix="nano-differential-"), "project")
    shutil.copytree(project, target, ignore=shutil.ignore_patterns("__pycache__"))
    for folder, dirs, files in os.walk(target):
        for name in dirs + files:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~0o022)
    os.chmod(target, 0o755)
    return target


def run_ours(python: str) -> Tuple[Dict[str, Any], List[List[Dict[str, Any]]]]:
    worker = harness.Worker(PROJECT, harness.discover(os.path.join(PROJECT, "nodes")), python=python)
    try:
        ready = worker.hello()
        results = []
        for number, (uid, inputs, parameters, abort_after) in enumerate(CASES, start=1):
            graph_node = {"id": number, "parameters": parameters, "x": 0, "y": 0, "serverUid": "py-differential"}
            kwargs = dict(inputs=inputs, graph_node=graph_node, instance_id=f"diff-{number}")
            if abort_after is None:
                results.append(worker.run(uid, **kwargs))
            else:
                results.append(worker.run_and_abort(uid, after=abort_after, **kwargs))
        if worker.violations:
            raise AssertionError(f"protocol violations: {worker.violations}")
        return ready, results
    finally:
        worker.close()


def up_to_final(statuses: List[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    for index, status in enumerate(statuses):
        if status.get("type") in FINAL:
            return statuses[: index + 1], statuses[index + 1 :]
    return statuses, []


def compare(
    label: str,
    sdk_definitions: Dict[str, Any],
    sdk_results: List[List[Dict[str, Any]]],
    our_definitions: Dict[str, Any],
    our_results: List[List[Dict[str, Any]]],
) -> int:
    """Prints each case as SAME, EXPECTED (an intended difference) or
    MISMATCH; the number of mismatches."""
    print(f"\n== {label} vs nanograph-sdk 0.2.3 ==")
    failures = 0
    if our_definitions == sdk_definitions:
        print(f"SAME      definitions of {len(our_definitions)} nodes")
    else:
        failures += 1
        print(f"MISMATCH  definitions\n  sdk:  {sdk_definitions}\n  ours: {our_definitions}")
    for (uid, *_), sdk_statuses, our_statuses in zip(CASES, sdk_results, our_results):
        if sdk_statuses == our_statuses:
            print(f"SAME      {uid}: {len(our_statuses)} statuses, final {our_statuses[-1]['type']}")
            continue
        why = expected_difference(uid, sdk_statuses, our_statuses)
        if why:
            print(f"EXPECTED  {uid}: {why}\n  sdk:  {sdk_statuses}\n  ours: {our_statuses}")
        else:
            failures += 1
            print(f"MISMATCH  {uid}\n  sdk:  {sdk_statuses}\n  ours: {our_statuses}")
    return failures


def run_cases(server: NodeServer) -> Tuple[Dict[str, Any], List[List[Dict[str, Any]]]]:
    """Every case over `server`'s WebSocket: its definitions and the statuses."""
    try:
        results = [server.run(n, uid, inputs, params, abort) for n, (uid, inputs, params, abort) in enumerate(CASES, 1)]
        definitions = {d["uid"]: d for d in server.handshake["payload"]["nodeDefinitions"]}
        return definitions, results
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sdk-python",
        default=os.environ.get("NANO_SDK_PYTHON", "/tmp/sdkvenv/bin/python"),
        help="an interpreter with nanograph-sdk==0.2.3 installed",
    )
    parser.add_argument(
        "--server",
        help="a nano-server binary: it serves the same project over its WebSocket, with the bundled "
        "SDK stand-in (this interpreter) and with the installed SDK (the SDK's interpreter)",
    )
    args = parser.parse_args()
    if not os.path.exists(args.sdk_python):
        print(
            f"no SDK interpreter at {args.sdk_python}: python3 -m venv /tmp/sdkvenv && "
            "/tmp/sdkvenv/bin/pip install nanograph-sdk==0.2.3"
        )
        return 2
    project = private_copy(PROJECT)
    sdk_definitions, sdk_results = run_cases(sdk_server(args.sdk_python, project))

    failures = 0
    for label, python in (("bundled SDK stand-in", sys.executable), ("installed nanograph-sdk", args.sdk_python)):
        ready, our_results = run_ours(python)
        our_definitions = {d["uid"]: d for lib in ready["libraries"] for d in lib.get("definitions", [])}
        failures += compare(
            f"nano_worker with the {label} ({ready['runtime']['executable']})",
            sdk_definitions,
            sdk_results,
            our_definitions,
            our_results,
        )
        if args.server:
            definitions, results = run_cases(nano_server(args.server, project, python))
            failures += compare(f"nano-server over its WebSocket, {label}", sdk_definitions, sdk_results, definitions, results)
    print(f"\n{failures} mismatch(es)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
