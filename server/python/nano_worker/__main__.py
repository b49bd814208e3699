"""`python3 -m nano_worker [--channel-fd N]`: one worker process. The
server holds the other end of the channel (fd 3 by default) and speaks
first: `hello`, then `execute`/`abort`/`reply`/`ping`/`shutdown`."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import os
import platform
import signal
import socket
import sys
from typing import Any, Dict, List

from . import PROTOCOL, RUNTIME, loader, services
from .channel import MAX_FROM_WORKER, Channel, log, read_frame
from .executor import Executor


class Worker:
    """The worker's life: load the libraries the hello names, say `ready`,
    serve executions until `shutdown` (or the channel's end)."""

    def __init__(self, channel: Channel, hello: Dict[str, Any], loop: asyncio.AbstractEventLoop):
        self.channel = channel
        self.hello = hello
        self.loop = loop
        self.executor = Executor(channel, loop)
        self.stopping = asyncio.Event()
        self.grace_ms = 0

    def dispatch(self, message: Dict[str, Any]) -> bool:
        """Reader thread: replies resolve at once (a blocked loop may be
        waiting on one); everything else runs on the loop (False)."""
        if message["type"] == "reply":
            services.host.reply(message)
            return True
        return False

    def on_message(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "execute":
            self.executor.execute(message)
        elif kind == "abort":
            self.executor.abort(message)
        elif kind == "shutdown":
            self.grace_ms = int(message.get("grace_ms") or 0)
            self.stopping.set()
        else:
            log(f"ignored a `{kind}` frame this runtime does not know")

    async def serve(self) -> None:
        root = os.path.abspath(self.hello.get("project_root") or os.getcwd())
        sdk = loader.install_sdk(root)
        self.channel.send(
            {
                "type": "ready",
                "protocol": PROTOCOL,
                "runtime": {
                    "name": RUNTIME,
                    "version": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "executable": sys.executable,
                    "pid": os.getpid(),
                    "sdk": sdk,
                },
                "libraries": await self.load_all(),
            }
        )
        # What loading made lives as long as the worker: keep it out of the
        # collector's full passes, which executions would otherwise pay for.
        gc.freeze()
        await self.stopping.wait()
        # The server drained first; what still runs gets the grace, aborted.
        self.executor.abort_all()
        try:
            await asyncio.wait_for(self.executor.idle.wait(), self.grace_ms / 1000)
        except asyncio.TimeoutError:
            pass
        self.channel.send({"type": "bye"})
        self.channel.close()

    async def load_all(self) -> List[Dict[str, Any]]:
        answers = []
        for entry in self.hello.get("libraries") or []:
            library_id, path = entry["id"], os.path.abspath(entry["path"])
            try:
                library = loader.load(library_id, path, entry.get("source"))
                definitions = loader.definitions(library)
                await loader.run_init(library)
            except loader.Refusal as refusal:
                sys.modules.pop(loader.module_name(library_id, path), None)
                log(f"refused {path}: {refusal.report['type']}: {refusal.report['message']}")
                sys.stderr.write(refusal.report["traceback"])
                answers.append({"id": library_id, "path": path, "refused": refusal.report})
                continue
            for uid, node in library.nodes.items():
                # A uid two files of a group register: the first one serves
                # (the server leaves the second's definition out too).
                self.executor.nodes.setdefault(uid, node)
            answers.append({"id": library_id, "path": path, "definitions": definitions})
        return answers


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="nano_worker", description=__doc__)
    parser.add_argument("--channel-fd", type=int, default=int(os.environ.get("NANO_WORKER_FD", "3")))
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group; the server decides the order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A segfault in a C extension leaves the Python stack in the server log.
    faulthandler.enable()
    try:
        sock = socket.socket(fileno=args.channel_fd)
        # A process a node starts must not hold the channel: the server
        # would not see this worker's end of file.
        os.set_inheritable(args.channel_fd, False)
    except OSError as err:
        log(f"no channel on fd {args.channel_fd} ({err}): nano-server starts this runtime (docs/worker-protocol.md)")
        return 2
    # Node code that parses sys.argv at import sees no runtime arguments.
    del sys.argv[1:]
    hello = read_frame(sock)
    if hello is None:
        return 0
    if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL:
        message = (
            f"this runtime speaks protocol {PROTOCOL}, the server sent {hello.get('type')} {hello.get('protocol')!r}"
        )
        channel = Channel(sock)
        channel.send({"type": "fatal", "message": message})
        channel.close()
        log(message)
        return 2
    channel = Channel(sock)
    channel.limit = int(hello.get("max_frame") or MAX_FROM_WORKER)
    services.host.channel = channel
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(channel, hello, loop)
    channel.attach(loop)
    channel.start_reading(worker.dispatch, worker.on_message)
    loop.run_until_complete(worker.serve())
    sys.stdout.flush()
    sys.stderr.flush()
    # Node threads may still run: they do not hold the process.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
