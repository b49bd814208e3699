"""Serves the current folder with the published nanograph-sdk, as a
project's `main.py` would (run with the SDK's interpreter, cwd = project).

Two adjustments, both from issue 21: the SDK README's examples import
`nanosdk_py`, which 0.2.3 does not ship, so it is aliased to
`nanograph_sdk`; and the README's `NanoSDK(config)` is outdated (0.2.3
reads nanoserver.json), so `NanoSDK()` is called without one."""

import asyncio
import os
import sys

import nanograph_sdk

sys.modules["nanosdk_py"] = nanograph_sdk
# `python main.py` in the project puts the project root on sys.path.
sys.path.insert(0, os.getcwd())


async def main():
    sdk = nanograph_sdk.NanoSDK()
    await sdk.start()
    await asyncio.Event().wait()


asyncio.run(main())
