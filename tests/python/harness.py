"""A stand-in for nano-server's side of the worker protocol
(`docs/worker-protocol.md`), for tests: it discovers `node.py` files as the
server will, starts `python3 -m nano_worker` on a socketpair, speaks the
real framing, answers host-service calls from an in-memory asset store, and
turns each execution's frames into the `node_status` objects the server
would send its client."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNTIME_PATH = os.path.join(REPO, "server", "python")
HEADER = struct.Struct(">I")
SKIPPED_DIRS = {".venv", "__pycache__", "site-packages"}
STARTING = {"type": "running", "message": "Starting execution..."}
ABORTED = "Execution aborted"  # server/src/execution/mod.rs, ABORTED
TIMEOUT = 20.0


def discover(nodes_path: str) -> List[str]:
    """Every `node.py` under `nodes_path`, as the issue's discovery rules
    say: skipped names, skipped folders, sorted for a stable order."""
    found = []
    for folder, dirs, files in os.walk(nodes_path):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in files:
            if name == "node.py" and not name.startswith("disabled.") and ".disabled." not in name:
                found.append(os.path.join(folder, name))
    return sorted(found)


class FakeNanoCore:
    """Assets by sha256 and resources, answering the `wire::Call` ops."""

    def __init__(self) -> None:
        self.assets: Dict[str, Dict[str, Any]] = {}
        self.content: Dict[str, bytes] = {}
        self.streams: Dict[int, List[Any]] = {}
        self.uploads: Dict[int, List[Any]] = {}
        self.resources: Dict[str, Dict[str, Any]] = {}
        self.calls: List[Dict[str, Any]] = []
        self._next = 1

    def _number(self) -> int:
        self._next += 1
        return self._next

    def store(self, data: bytes, upload: Dict[str, Any]) -> Dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        exists = digest in self.assets
        asset = {
            "hash": digest,
            "name": upload.get("filename") or digest[7:19],
            "type": upload.get("type") or "file",
            "size": len(data),
            "meta": upload.get("meta") or {},
            "alreadyExists": exists,
        }
        self.assets[digest] = asset
        self.content[digest] = data
        return asset

    def answer(self, request: Dict[str, Any], body: bytes):
        """(json, bytes) or raises KeyError/ValueError as (kind, message)."""
        self.calls.append(request)
        op = request.get("op")
        if op in ("open", "exists", "presigned", "download_url"):
            digest = request["hash"]
            if op == "exists":
                return {"exists": digest in self.assets}, b""
            if digest not in self.assets:
                raise LookupError("not_found", f"asset not found: {digest}")
            if op == "open":
                number = self._number()
                self.streams[number] = [self.content[digest], 0]
                return {"stream": number, "size": len(self.content[digest])}, b""
            if op == "presigned":
                return {"url": f"https://nanocore.test/p/{digest}", "expiresIn": 600}, b""
            return {"url": f"https://nanocore.test/assets/{digest}/download"}, b""
        if op == "read":
            data, offset = self.streams[request["stream"]]
            chunk = data[offset : offset + request["max"]]
            self.streams[request["stream"]][1] = offset + len(chunk)
            return None, chunk
        if op == "close":
            self.streams.pop(request["stream"], None)
            return None, b""
        if op == "list":
            return [a for a in self.assets.values() if request.get("type") in (None, a["type"])], b""
        if op == "upload":
            upload = {k: v for k, v in request.items() if k != "op"}
            return self.store(body, upload), b""
        if op == "upload_begin":
            number = self._number()
            self.uploads[number] = [request.get("upload") or {}, bytearray()]
            return {"upload": number}, b""
        if op == "upload_write":
            self.uploads[request["upload"]][1] += body
            return None, b""
        if op == "upload_finish":
            upload, data = self.uploads.pop(request["upload"])
            return self.store(bytes(data), upload), b""
        if op == "upload_cancel":
            self.uploads.pop(request["upload"], None)
            return None, b""
        if op == "allocate":
            rid = request.get("resourceId") or f"res-{self._number()}"
            self.resources[rid] = request
            return {"resourceId": rid}, b""
        if op == "free":
            self.resources.pop(request["resourceId"], None)
            return None, b""
        raise LookupError("other", f"unknown op {op!r}")


class ProtocolViolation(AssertionError):
    pass


class Worker:
    """One worker process and the server's bookkeeping for it."""

    def __init__(
        self,
        project_root: str,
        libraries: List[str],
        python: str = sys.executable,
        send_source: bool = True,
        env: Optional[Dict[str, str]] = None,
    ):
        self.project_root = os.path.abspath(project_root)
        self.paths = [os.path.abspath(p) for p in libraries]
        self.nanocore = FakeNanoCore()
        ours, theirs = socket.socketpair()
        self.sock = ours
        self.stderr = tempfile.TemporaryFile()
        self.stdout = tempfile.TemporaryFile()
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = RUNTIME_PATH
        environment.pop("NANOCORE_TOKEN", None)
        self.process = subprocess.Popen(
            # A path given relative to the caller's folder still names the
            # same interpreter from the project's (a bare name is looked up
            # on PATH).
            [os.path.abspath(python) if os.sep in python else python, "-m", "nano_worker", "--channel-fd", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=self.project_root,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,
            stderr=self.stderr,
        )
        theirs.close()
        self._send_lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))
        self.executions: Dict[int, "queue.Queue[Dict[str, Any]]"] = {}
        self.control: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self.pongs: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self.violations: List[str] = []
        self.call_ids: List[Optional[int]] = []
        self.eof = threading.Event()
        self.ready: Optional[Dict[str, Any]] = None
        self.send_source = send_source
        # How long to watch for frames after a `done` (0 for throughput runs).
        self.linger = 0.05
        threading.Thread(target=self._read, daemon=True).start()

    # -- frames ---------------------------------------------------------
    def send(self, message: Dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        with self._send_lock:
            self.sock.sendall(HEADER.pack(len(body)) + body)

    def _read_exact(self, n: int) -> Optional[bytes]:
        parts = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                return None
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _read(self) -> None:
        try:
            while True:
                header = self._read_exact(4)
                if header is None:
                    break
                (length,) = HEADER.unpack(header)
                if length > 256 << 20:
                    self.violations.append(f"a frame of {length} bytes")
                    break
                body = self._read_exact(length)
                if body is None:
                    break
                self._on_frame(json.loads(body))
        except OSError:
            pass
        finally:
            self.eof.set()
            for waiting in self.executions.values():
                waiting.put({"type": "eof"})
            self.control.put({"type": "eof"})

    def _on_frame(self, message: Dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "pong":
            self.pongs.put(message)
        elif kind in ("status", "done"):
            waiting = self.executions.get(message.get("id"))
            if waiting is None:
                self.violations.append(f"a {kind} for execution {message.get('id')}, which it was not given")
                return
            waiting.put(message)
        elif kind == "call":
            self._answer(message)
        else:
            self.control.put(message)

    def _answer(self, message: Dict[str, Any]) -> None:
        execution = message.get("id")
        if execution is not None and execution not in self.executions:
            self.violations.append(f"a call for execution {execution}, which it was not given")
            return
        self.call_ids.append(execution)
        body = base64.b64decode(message["body"]) if message.get("body") else b""
        reply: Dict[str, Any] = {"type": "reply", "call": message["call"]}
        try:
            answer, data = self.nanocore.answer(message["request"], body)
            reply["ok"] = answer
            if data:
                reply["body"] = base64.b64encode(data).decode("ascii")
        except LookupError as err:
            kind, text = err.args
            reply["error"] = {"kind": kind, "message": text}
        self.send(reply)

    # -- the protocol, as the server drives it ---------------------------
    def hello(self, protocol: int = 1, timeout: float = TIMEOUT, max_frame: int = 256 << 20) -> Dict[str, Any]:
        libraries = []
        for number, path in enumerate(self.paths):
            entry: Dict[str, Any] = {"id": number, "path": path}
            if self.send_source:
                with open(path, "r", encoding="utf-8") as handle:
                    entry["source"] = handle.read()
            libraries.append(entry)
        self.send(
            {
                "type": "hello",
                "protocol": protocol,
                "project_root": self.project_root,
                "libraries": libraries,
                "max_frame": max_frame,
            }
        )
        self.ready = self.control.get(timeout=timeout)
        return self.ready

    def library_of(self, uid: str) -> int:
        assert self.ready is not None
        for library in self.ready["libraries"]:
            for definition in library.get("definitions", []):
                if definition["uid"] == uid:
                    return library["id"]
        raise KeyError(uid)

    def start(
        self, uid: str, inputs: Any = None, parameters: Any = None, graph_node: Any = None, instance_id: str = "wf-1"
    ) -> int:
        number = next(self._ids)
        self.executions[number] = queue.Queue()
        if graph_node is None:
            graph_node = {"id": number, "parameters": parameters or [], "x": 0, "y": 0}
        self.send(
            {
                "type": "execute",
                "id": number,
                "library": self.library_of(uid),
                "uid": uid,
                "instance_id": instance_id,
                "inputs": inputs or {},
                "parameters": graph_node.get("parameters", []) if parameters is None else parameters,
                "graph_node": graph_node,
            }
        )
        return number

    def abort(self, number: int) -> None:
        self.send({"type": "abort", "id": number})

    def collect(self, number: int, timeout: float = TIMEOUT, aborted: bool = False) -> List[Dict[str, Any]]:
        """The statuses the server's client would see, `Starting...` first.
        After `aborted`, the server's own final came at the abort; the
        worker's `done` still has to arrive (it frees the slot)."""
        statuses: List[Dict[str, Any]] = [STARTING]
        waiting = self.executions[number]
        deadline = time.monotonic() + timeout
        while True:
            message = waiting.get(timeout=max(0.0, deadline - time.monotonic()))
            if message["type"] == "eof":
                statuses.append({"type": "error", "message": "the worker exited"})
                return statuses
            if message["type"] == "status":
                status = message["status"]
                if status.get("type") in ("running", "idle", "missing") and not aborted:
                    statuses.append(status)
                continue
            # done
            if aborted:
                if message.get("outcome") != "aborted":
                    self.violations.append(f"execution {number} ended `{message.get('outcome')}` after its abort")
                statuses.append({"type": "error", "message": ABORTED})
            elif message["outcome"] == "complete":
                statuses.append(
                    {
                        "type": "complete",
                        "message": message.get("message", "Execution finished."),
                        "outputs": message.get("outputs"),
                    }
                )
            else:
                statuses.append({"type": "error", "message": message.get("message", "")})
            self._after_done(number)
            return statuses

    def _after_done(self, number: int) -> None:
        # Nothing may follow `done`: wait a moment to catch a violation
        # (the reader also records any frame naming an id no longer known).
        waiting = self.executions[number]
        try:
            late = waiting.get(timeout=self.linger)
            if late["type"] != "eof":
                self.violations.append(f"a {late['type']} for execution {number} after its done")
        except queue.Empty:
            pass
        del self.executions[number]

    def run_and_abort(self, uid: str, after: int = 1, **kwargs: Any) -> List[Dict[str, Any]]:
        """Aborts once the node sent `after` statuses; the server sends the
        final `Execution aborted` at once, then waits for the worker's done."""
        number = self.start(uid, **kwargs)
        statuses: List[Dict[str, Any]] = [STARTING]
        waiting = self.executions[number]
        while len(statuses) < 1 + after:
            message = waiting.get(timeout=TIMEOUT)
            if message["type"] != "status":
                raise AssertionError(f"{uid} ended before its abort: {message}")
            statuses.append(message["status"])
        self.abort(number)
        return statuses + self.collect(number, aborted=True)[1:]

    def run(self, uid: str, **kwargs: Any) -> List[Dict[str, Any]]:
        return self.collect(self.start(uid, **kwargs))

    def ping(self, seq: int, timeout: float = TIMEOUT) -> float:
        began = time.monotonic()
        self.send({"type": "ping", "seq": seq})
        pong = self.pongs.get(timeout=timeout)
        assert pong["seq"] == seq, pong
        return time.monotonic() - began

    def shutdown(self, grace_ms: int = 1000, timeout: float = TIMEOUT) -> int:
        self.send({"type": "shutdown", "grace_ms": grace_ms})
        bye = self.control.get(timeout=timeout)
        assert bye["type"] == "bye", bye
        return self.process.wait(timeout=timeout)

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stdout_text(self) -> str:
        self.stdout.seek(0)
        return self.stdout.read().decode("utf-8", "replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        self.sock.close()
        self.stderr.close()
        self.stdout.close()
