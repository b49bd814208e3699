"""The channel to the server: 4-byte big-endian length + UTF-8 JSON frames
on one stream socket, read by one thread and written by another.

Neither thread ever runs node code, so pings are answered while a node
blocks the event loop or a thread (not while C code holds the GIL).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import struct
import sys
import threading
from typing import Any, Callable, Optional

HEADER = struct.Struct(">I")

# Largest frame the server sends: a request (inputs up to the server's
# max_message_bytes) or a host-service reply chunk.
MAX_TO_WORKER = 1 << 30
# Largest frame the server accepts from a worker; the hello may lower it.
MAX_FROM_WORKER = 256 << 20


class FrameTooLarge(ValueError):
    """An outgoing frame over the server's limit: the caller decides what
    to send instead."""


def log(message: str) -> None:
    """The worker's own diagnostics: stderr, which the server logs."""
    try:
        sys.stderr.write(f"[nano_worker {os.getpid()}] {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def encode(message: dict, limit: int) -> bytes:
    """One frame. Raises ValueError/TypeError for what JSON cannot carry
    (NaN included: the server's decoder refuses it) and FrameTooLarge."""
    body = json.dumps(message, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > limit:
        raise FrameTooLarge(f"{len(body)} bytes, over the channel's {limit} byte limit")
    return HEADER.pack(len(body)) + body


def _read_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> Optional[dict]:
    """The next frame as a dict; None at end of file. The server is trusted,
    so a malformed frame is a bug: ValueError."""
    header = _read_exact(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > MAX_TO_WORKER:
        raise ValueError(f"a frame of {length} bytes, over {MAX_TO_WORKER}")
    body = _read_exact(sock, length)
    if body is None:
        return None
    message = json.loads(body.decode("utf-8"))
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("a frame that is not an object with a string `type`")
    return message


class Channel:
    """The worker's end. `send` may be called from any thread; frames leave
    in the order `send` was called."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.limit = MAX_FROM_WORKER
        self._out: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self._writer = threading.Thread(target=self._write, name="nano-writer", daemon=True)
        self._writer.start()

    def send(self, message: dict) -> None:
        self._out.put(encode(message, self.limit))

    def close(self) -> None:
        """Flushes what is queued, then stops the writer."""
        self._out.put(None)
        self._writer.join(timeout=5)

    def _write(self) -> None:
        while True:
            frame = self._out.get()
            if frame is None:
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                # The server is gone: nobody is left to answer.
                os._exit(0)

    def read_loop(self, dispatch: Callable[[dict], Any]) -> None:
        """Runs on the reader thread until end of file, which ends the
        process: a worker never outlives its server's end of the channel."""
        while True:
            try:
                message = read_frame(self.sock)
            except ValueError as err:  # a server bug: say so and stop
                log(f"unreadable frame from the server ({err}); exiting")
                os._exit(2)
            except OSError:
                message = None
            if message is None:
                os._exit(0)
            if message["type"] == "ping":
                self.send({"type": "pong", "seq": message.get("seq")})
                continue
            dispatch(message)
