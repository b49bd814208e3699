"""Executions, by nanograph-sdk 0.2.3's calling rules: `async def execute`
on the worker's event loop, a plain `def execute` in its own thread, the
node's statuses in order and always before its one final status.

The server emits the `running` "Starting execution..." status itself when
it hands an execution over, so it precedes everything the worker sends.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import traceback
from types import SimpleNamespace
from typing import Any, Dict, Optional

from . import services
from .channel import Channel, FrameTooLarge, log

# Statuses that end an execution when a node sends them itself.
FINAL_TYPES = ("complete", "error")


class _Sent:
    """What `send_status` returns off the event loop: already sent, and
    awaitable like the Task the SDK returns."""

    def __await__(self):
        return
        yield  # pragma: no cover - makes this a generator

    def done(self) -> bool:
        return True

    def result(self) -> None:
        return None

    def cancel(self) -> bool:
        return False


class Execution:
    """One execution the server handed over, until its `done` is sent.

    `done` goes out exactly once: when the node sends its own final status,
    when its code ends, or (after an abort) when its code ends or it sends a
    final status; nothing of this execution is sent after it.
    """

    def __init__(self, channel: Channel, message: Dict[str, Any], loop: asyncio.AbstractEventLoop):
        self.channel = channel
        self.loop = loop
        self.id: int = message["id"]
        self.uid: str = message.get("uid", "")
        self.instance_id: str = message.get("instance_id", "")
        # A plain flag: set once, on the loop; read from any thread.
        self.aborted = False
        self.finished = False
        self.task: Optional[asyncio.Task] = None
        self.in_thread = False
        self._lock = threading.Lock()

    def is_aborted(self) -> bool:
        return self.aborted

    def send_status(self, status: Any):
        self._node_status(status)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            future = self.loop.create_future()
            future.set_result(None)
            return future
        return _Sent()

    def _node_status(self, status: Any) -> None:
        if not isinstance(status, dict):
            log(f"execution {self.id} ({self.uid}): dropped a status that is not a dict: {status!r:.200}")
            return
        kind = status.get("type")
        if kind in FINAL_TYPES:
            # The node ends its execution itself; its return value is ignored.
            if kind == "complete":
                done: Dict[str, Any] = {"outcome": "complete", "outputs": status.get("outputs", {})}
                if isinstance(status.get("message"), str):
                    done["message"] = status["message"]
            else:
                done = {"outcome": "error", "message": str(status.get("message", ""))}
            self.finish(done)
            return
        with self._lock:
            if self.finished or self.aborted:
                return
            try:
                self.channel.send({"type": "status", "id": self.id, "status": status})
            except (TypeError, ValueError) as err:
                log(f"execution {self.id} ({self.uid}): dropped a status it cannot send: {err}")

    def send_live(self, message: Dict[str, Any], now: bool = False) -> bool:
        """Sends a frame naming this execution unless its `done` went."""
        with self._lock:
            if self.finished:
                return False
            self.channel.send(message, now=now)
            return True

    def finish(self, done: Dict[str, Any]) -> bool:
        """Sends `done` unless it went already; an abort overrides the outcome."""
        with self._lock:
            if self.finished:
                return False
            self.finished = True
            if self.aborted:
                done = {"outcome": "aborted"}
            try:
                self.channel.send(dict(done, type="done", id=self.id))
            except (TypeError, ValueError) as err:
                if isinstance(err, FrameTooLarge):
                    message = f"the node's outputs are too large to send: {err}"
                else:
                    message = f"the node returned outputs that cannot be sent as JSON: {err}"
                self.channel.send({"type": "done", "id": self.id, "outcome": "error", "message": message})
            return True

    def abort(self) -> None:
        self.aborted = True
        # As the SDK does for coroutines; a thread only sees is_aborted().
        if self.task is not None and not self.in_thread and not self.task.done():
            self.task.cancel()


class Executor:
    """The executions in flight, keyed by the server's id (event loop only)."""

    def __init__(self, channel: Channel, loop: asyncio.AbstractEventLoop):
        self.channel = channel
        self.loop = loop
        self.nodes: Dict[str, Dict[str, Any]] = {}
        self.running: Dict[int, Execution] = {}
        self.idle = asyncio.Event()
        self.idle.set()

    def execute(self, message: Dict[str, Any]) -> None:
        execution = Execution(self.channel, message, self.loop)
        # By uid: unique among this worker's libraries (`library` names the
        # file for runtimes that want it).
        node = self.nodes.get(execution.uid)
        if node is None:
            execution.finish({"outcome": "error", "message": f"Node definition not found: {execution.uid}"})
            return
        graph_node = message.get("graph_node")
        ctx = SimpleNamespace(
            inputs=message.get("inputs") or {},
            parameters=message.get("parameters") if message.get("parameters") is not None else [],
            context={
                "send_status": execution.send_status,
                "is_aborted": execution.is_aborted,
                "graph_node": graph_node,
                "instance_id": execution.instance_id,
            },
        )
        self.running[execution.id] = execution
        self.idle.clear()
        execution.task = self.loop.create_task(self._run(execution, node, ctx))

    def abort(self, message: Dict[str, Any]) -> None:
        execution = self.running.get(message.get("id"))  # type: ignore[arg-type]
        if execution is not None:
            execution.abort()

    def abort_all(self) -> None:
        for execution in list(self.running.values()):
            execution.abort()

    async def _run(self, execution: Execution, node: Dict[str, Any], ctx: SimpleNamespace) -> None:
        services.current_execution.set(execution)
        try:
            fn = node["execute"]
            if asyncio.iscoroutinefunction(fn):
                result = await fn(ctx)
            else:
                execution.in_thread = True
                result = await self._in_thread(fn, ctx)
                execution.in_thread = False
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            message = "Execution aborted" if execution.is_aborted() else "Execution cancelled"
            execution.finish({"outcome": "error", "message": message})
        except BaseException as err:
            if not execution.is_aborted() and not execution.finished:
                log(f"execution {execution.id} ({execution.uid}, instance {execution.instance_id}) failed:")
                traceback.print_exception(type(err), err, err.__traceback__)
            execution.finish({"outcome": "error", "message": str(err)})
            if isinstance(err, KeyboardInterrupt):
                raise
        else:
            execution.finish({"outcome": "complete", "outputs": result})
        finally:
            self.running.pop(execution.id, None)
            if not self.running:
                self.idle.set()

    async def _in_thread(self, fn: Any, ctx: SimpleNamespace) -> Any:
        future = self.loop.create_future()
        context = contextvars.copy_context()

        def settle(ok: bool, value: Any) -> None:
            if not future.done():
                (future.set_result if ok else future.set_exception)(value)

        def body() -> None:
            try:
                value = context.run(fn, ctx)
            except BaseException as err:  # handed to the loop, which reports it
                self.loop.call_soon_threadsafe(settle, False, err)
            else:
                self.loop.call_soon_threadsafe(settle, True, value)

        # A thread per execution: a node that blocks holds only its own.
        threading.Thread(target=body, name="nano-node", daemon=True).start()
        # Shielded: an abort must not end the execution before its thread.
        return await asyncio.shield(future)
