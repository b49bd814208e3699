"""The channel to the server: 4-byte big-endian length + UTF-8 JSON frames
on one stream socket, read by its own thread.

The event loop reads; a watchdog thread that never runs node code takes
over while a node blocks the loop, so pings are answered then too (not
while C code holds the GIL).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Optional

HEADER = struct.Struct(">I")
# How much one `recv` may bring; every whole frame in it is handled at once.
READ_CHUNK = 1 << 18
# The watchdog's tick: half the server's ping interval, once two pings have
# shown it, within these bounds (seconds).
WATCHDOG_TICK_MIN = 0.01
WATCHDOG_TICK_MAX = 0.25
# How long a write may wait for the server to read before the worker gives
# up on it (the server's own heartbeat replaces a stuck worker far sooner).
WRITE_TIMEOUT_S = 86400.0

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


# One encoder for every frame: `json.dumps` with options builds one per call.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def encode(message: dict, limit: int) -> bytes:
    """One frame. Raises ValueError/TypeError for what JSON cannot carry
    (NaN included: the server's decoder refuses it) and FrameTooLarge."""
    body = _ENCODER.encode(message).encode("utf-8")
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
    in the order `send` was called.

    Wake-ups are what an execution costs here, so the event loop reads the
    socket itself and both directions batch: every whole frame a `recv`
    brought is handled in that turn of the loop, and frames sent on the
    loop's thread collect until the turn ends and leave with one `sendall`.
    Frames sent from any other thread (a node's own thread, the watchdog's
    pongs) leave at once, with whatever the loop had collected before them.

    A node that blocks the loop must not silence the worker: a watchdog
    thread sees when frames wait while the loop has not read for a tick,
    and then reads them itself, answering pings and host-call replies at
    once and queueing the rest for the loop.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.limit = MAX_FROM_WORKER
        self._writer = sock
        self._pending = bytearray()
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[int] = None
        self._flush_scheduled = False
        self._buffer = bytearray()
        self._read_lock = threading.Lock()
        self._turns = 0
        self._last_ping = 0.0
        self._tick = WATCHDOG_TICK_MAX
        self._inbox: "collections.deque[dict]" = collections.deque()
        self._inbox_lock = threading.Lock()
        self._drain_scheduled = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sends from this loop's thread are batched from now on (call it
        on that thread)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def send(self, message: dict, now: bool = False) -> None:
        """Queues one frame. On the loop's thread it leaves when the loop's
        turn ends unless `now` (a caller about to block on the answer);
        elsewhere it leaves before this returns."""
        frame = encode(message, self.limit)
        on_loop = self._loop_thread is not None and threading.get_ident() == self._loop_thread
        with self._pending_lock:
            self._pending += frame
            if on_loop and not now:
                if self._flush_scheduled:
                    return
                self._flush_scheduled = True
                schedule = True
            else:
                schedule = False
        if schedule:
            assert self._loop is not None
            self._loop.call_soon(self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        """Writes everything queued, in order, with one `sendall`."""
        with self._write_lock:
            with self._pending_lock:
                self._flush_scheduled = False
                if not self._pending:
                    return
                data, self._pending = self._pending, bytearray()
            try:
                self._writer.sendall(data)
            except OSError:
                # The server is gone (or stopped reading for a day).
                os._exit(0)

    def close(self) -> None:
        """Sends what is queued."""
        self.flush()

    def start_reading(self, dispatch: Callable[[dict], Any], on_loop: Callable[[dict], Any]) -> None:
        """Reads on the attached loop until end of file, which ends the
        process: a worker never outlives its server's end of the channel.
        Pings are answered here; `dispatch` sees every other frame first,
        on whichever thread read it, and returns True for those it handled;
        the rest go to `on_loop`, on the loop, in order."""
        assert self._loop is not None
        # Reads never block; writes wait (a socket object of their own on
        # the same open file, with a timeout, so Python polls for room).
        self._writer = socket.socket(fileno=os.dup(self.sock.fileno()))
        self._writer.settimeout(WRITE_TIMEOUT_S)
        self.sock.setblocking(False)
        self._dispatch = dispatch
        self._on_loop = on_loop
        self._loop.add_reader(self.sock.fileno(), self._readable)
        threading.Thread(target=self._watchdog, name="nano-watchdog", daemon=True).start()

    def _read(self) -> list:
        """Every whole frame the socket has now, after any left over
        (callers hold the read lock)."""
        try:
            chunk = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            chunk = b""
        if not chunk:
            os._exit(0)
        self._buffer += chunk
        try:
            messages, used = split_frames(self._buffer)
        except ValueError as err:  # a server bug: say so and stop
            log(f"unreadable frame from the server ({err}); exiting")
            os._exit(2)
        del self._buffer[:used]
        return messages

    def _sort(self, messages: list) -> list:
        """Answers pings and lets `dispatch` take what it handles; returns
        the rest, for the loop."""
        rest = []
        for message in messages:
            if message["type"] == "ping":
                now = time.monotonic()
                if self._last_ping:
                    gap = now - self._last_ping
                    self._tick = min(WATCHDOG_TICK_MAX, max(WATCHDOG_TICK_MIN, gap / 2))
                self._last_ping = now
                self.send({"type": "pong", "seq": message.get("seq")})
            elif not self._dispatch(message):
                rest.append(message)
        return rest

    def _readable(self) -> None:
        """The loop's turn: read, handle, answer, in one wake-up."""
        with self._read_lock:
            self._turns += 1
            messages = self._read()
        for message in self._sort(messages):
            self._on_loop(message)
        self.flush()

    def _watchdog(self) -> None:
        seen = -1
        while True:
            time.sleep(self._tick)
            if self._turns != seen:
                seen = self._turns
                continue
            # The loop has not read for a whole tick: idle, or blocked by a
            # node. Frames waiting mean blocked.
            try:
                waiting, _, _ = select.select([self.sock], [], [], 0)
            except (OSError, ValueError):
                return
            if not waiting:
                continue
            with self._read_lock:
                messages = self._read()
            rest = self._sort(messages)
            if rest:
                self._hand_over(rest)

    def _hand_over(self, batch: list) -> None:
        with self._inbox_lock:
            self._inbox.extend(batch)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._inbox_lock:
            messages = list(self._inbox)
            self._inbox.clear()
            self._drain_scheduled = False
            self._turns += 1
        for message in messages:
            self._on_loop(message)


def split_frames(buffer: bytearray) -> "tuple[list, int]":
    """The whole frames at the start of `buffer`, decoded, and how many
    bytes they took. The server is trusted, so a malformed frame is a bug:
    ValueError."""
    messages = []
    at = 0
    end = len(buffer)
    view = memoryview(buffer)
    try:
        while end - at >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, at)
            if length > MAX_TO_WORKER:
                raise ValueError(f"a frame of {length} bytes, over {MAX_TO_WORKER}")
            if end - at - HEADER.size < length:
                break
            start = at + HEADER.size
            message = json.loads(bytes(view[start : start + length]))
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ValueError("a frame that is not an object with a string `type`")
            messages.append(message)
            at = start + length
    finally:
        view.release()
    return messages, at
