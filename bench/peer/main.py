"""Benchmark peer: the published Python SDK (nanograph-sdk 0.2.3) serving the
Python twins of our three example nodes, over the same wire protocol.

Usage: PORT=3117 python main.py   (run.sh does this from the venv)

The SDK itself reads `nanoserver.json` and `nodes/` relative to the current
directory, takes the port from env PORT only (default 3017; we default it to
3117), binds 0.0.0.0 (not configurable in 0.2.3) and prints
`[NANOSERVER_READY]` on stdout once listening. Its logs go to stderr; set
NANOSDK_LOG_LEVEL=warn to silence the per-execution info lines.
"""

import asyncio
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)  # the SDK looks for ./nanoserver.json and ./nodes
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # nodes import `compat` from here
os.environ.setdefault('PORT', '3117')

from nanograph_sdk import NanoSDK  # noqa: E402


async def run() -> None:
    sdk = NanoSDK()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sdk.start()  # prints [NANOSERVER_READY] (flushed) when listening
    try:
        await stop.wait()
    finally:
        await sdk.stop()


if __name__ == '__main__':
    asyncio.run(run())
