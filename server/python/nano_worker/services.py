"""NanoCore's asset and resource functions, answered by the server over the
channel (`call` / `reply` frames): the worker never holds the token.

The names and signatures are nanograph-sdk 0.2.3's; the call JSON is the
native plugins' (`plugin-abi/src/services.rs`, `wire::Call`), so the
server answers both worker kinds with one piece of code.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import itertools
import re
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple, Union

# The execution a call is made for (an object with `id` and `finished`);
# None at import or in `init`.
current_execution: "contextvars.ContextVar[Any]" = contextvars.ContextVar("nano_execution", default=None)

# Same as the native plugins' services::CHUNK_BYTES.
CHUNK_BYTES = 256 << 10

_HASH = re.compile(r"^sha256:[a-f0-9]{64}$")


class ServiceError(RuntimeError):
    """A failed host-service call: `kind` is the server's error kind
    (`not_found`, `unreachable`, `not_configured`, `aborted`, ...)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message


_client_error: Optional[type] = None


def failure(kind: str, message: str) -> ServiceError:
    """A ServiceError, which is also an aiohttp.ClientError once aiohttp is
    loaded (node code written for the SDK catches that); never imported
    here, as it costs memory a worker without the SDK does not need."""
    global _client_error
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return ServiceError(kind, message)
    if _client_error is None:
        _client_error = type("ServiceError", (ServiceError, aiohttp.ClientError), {})
    return _client_error(kind, message)


class _Host:
    """The calls waiting for their reply, keyed by call number."""

    def __init__(self) -> None:
        self.channel = None
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: Dict[int, concurrent.futures.Future] = {}

    def call(self, request: dict, body: bytes = b"") -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self.channel is None:
            future.set_exception(failure("unsupported", "no server to answer host calls"))
            return future
        execution = current_execution.get()
        number = next(self._numbers)
        message: Dict[str, Any] = {
            "type": "call",
            "id": None if execution is None else execution.id,
            "call": number,
            "request": request,
        }
        if body:
            message["body"] = base64.b64encode(body).decode("ascii")
        with self._lock:
            self._waiting[number] = future
        try:
            if execution is None:
                self.channel.send(message, now=True)
            elif not execution.send_live(message, now=True):
                # Its `done` went: its id is no longer the server's, and naming it would end the worker.
                raise failure("aborted", "the execution has ended")
        except Exception as err:
            with self._lock:
                self._waiting.pop(number, None)
            if not isinstance(err, ServiceError):
                err = failure("other", f"the call could not be sent: {err}")
            future.set_exception(err)
        return future

    def reply(self, message: dict) -> None:
        """A `reply` frame (reader thread)."""
        with self._lock:
            future = self._waiting.pop(message.get("call"), None)
        if future is None:
            return
        if "error" in message:
            error = message["error"] or {}
            future.set_exception(failure(str(error.get("kind", "other")), str(error.get("message", ""))))
        else:
            body = base64.b64decode(message["body"]) if message.get("body") else b""
            future.set_result((message.get("ok"), body))


host = _Host()


async def _call(request: dict, body: bytes = b"") -> Tuple[Any, bytes]:
    return await asyncio.wrap_future(host.call(request, body))


def validate_hash(hash: str) -> None:
    """Validate a content-addressed hash (sha256:<64hex>). Raises ValueError if invalid."""
    if not hash.startswith("sha256:") or len(hash) != 71:
        raise ValueError(f'Invalid asset hash: expected sha256:<64-hex-chars>, got "{hash}"')


def is_valid_hash(hash: str) -> bool:
    """Check if a string is a valid content-addressed hash."""
    return bool(_HASH.match(hash))


class AssetStream:
    """An asset's content, read from the server in chunks: the subset of
    aiohttp.StreamReader that node code uses (the SDK returns one)."""

    def __init__(self, stream: int, size: Optional[int]):
        self.stream = stream
        self.size = size
        self._buffer = b""
        self._eof = False

    async def _fill(self) -> None:
        if self._eof:
            return
        _, chunk = await _call({"op": "read", "stream": self.stream, "max": CHUNK_BYTES})
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True
            await _call({"op": "close", "stream": self.stream})

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def readany(self) -> bytes:
        if not self._buffer:
            await self._fill()
        data, self._buffer = self._buffer, b""
        return data

    async def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buffer]
            self._buffer = b""
            while not self._eof:
                parts.append(await self.readany())
            return b"".join(parts)
        while len(self._buffer) < n and not self._eof:
            await self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await self.read(n)
        if len(data) < n:
            raise asyncio.IncompleteReadError(data, n)
        return data

    async def iter_chunked(self, n: int):
        while True:
            data = await self.read(n)
            if not data:
                return
            yield data

    async def iter_any(self):
        while True:
            data = await self.readany()
            if not data:
                return
            yield data

    def __aiter__(self):
        return self.iter_any()


async def list_assets(filter: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """List assets with optional filtering (`type`, `hash`)."""
    request: Dict[str, Any] = {"op": "list"}
    request.update({k: v for k, v in (filter or {}).items() if k in ("type", "hash")})
    answer, _ = await _call(request)
    return answer


async def resolve_asset(hash: str, options: Optional[Dict[str, Any]] = None) -> Union[AssetStream, bytes]:
    """An asset's content: a stream, or bytes with `{'as_buffer': True}`."""
    validate_hash(hash)
    opened, _ = await _call({"op": "open", "hash": hash})
    stream = AssetStream(int(opened["stream"]), opened.get("size"))
    if (options or {}).get("as_buffer", False):
        return await stream.read()
    return stream


def get_asset_download_url(hash: str) -> str:
    """The direct download URL for an asset. Synchronous, as in the SDK:
    it waits for the server's answer."""
    validate_hash(hash)
    answer, _ = host.call({"op": "download_url", "hash": hash}).result()
    return answer["url"]


async def get_asset_presigned_url(hash: str) -> Dict[str, Any]:
    """A presigned URL for an asset: `{'url', 'expiresIn'}`."""
    validate_hash(hash)
    answer, _ = await _call({"op": "presigned", "hash": hash})
    return answer


async def asset_exists(hash: str) -> bool:
    """Whether NanoCore has the asset; False on any failure, as in the SDK."""
    validate_hash(hash)
    try:
        answer, _ = await _call({"op": "exists", "hash": hash})
        return bool(answer.get("exists", False))
    except Exception:
        return False


def _content(file: Any) -> bytes:
    if isinstance(file, str):
        try:
            with open(file, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            raise ValueError(f"File not found: {file}") from None
    if isinstance(file, (bytes, bytearray, memoryview)):
        return bytes(file)
    data = file.read()
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


async def upload_asset(file: Any, options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Upload an asset (a path, bytes or a file-like object); answers the
    asset as NanoCore describes it."""
    options = options or {}
    upload: Dict[str, Any] = {}
    if options.get("type"):
        upload["type"] = options["type"]
    if options.get("filename"):
        upload["filename"] = options["filename"]
    if options.get("meta"):
        upload["meta"] = options["meta"]
    content = _content(file)
    if len(content) <= CHUNK_BYTES:
        answer, _ = await _call(dict(upload, op="upload"), content)
        return answer
    begun, _ = await _call({"op": "upload_begin", "upload": upload, "size": len(content)})
    number = int(begun["upload"])
    try:
        view = memoryview(content)
        for start in range(0, len(content), CHUNK_BYTES):
            await _call({"op": "upload_write", "upload": number}, bytes(view[start : start + CHUNK_BYTES]))
    except BaseException:
        host.call({"op": "upload_cancel", "upload": number})
        raise
    answer, _ = await _call({"op": "upload_finish", "upload": number})
    return answer


async def allocate_resource(
    server_uid: str,
    resource_id: str,
    type: str,
    name: str,
    vram_usage: int = 0,
    metadata: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Tell NanoCore a resource was allocated; `server_uid` is the server's own."""
    answer, _ = await _call(
        {
            "op": "allocate",
            "resourceId": resource_id,
            "type": type,
            "name": name,
            "vramUsage": int(vram_usage or 0),
            "metadata": metadata or {},
        }
    )
    return answer


async def free_resource(server_uid: str, resource_id: str) -> Dict[str, Any]:
    """Tell NanoCore a resource was freed."""
    answer, _ = await _call({"op": "free", "resourceId": resource_id})
    return answer or {}


async def allocate_resource_static(server_uid, resource_id, type, name, vram_usage, metadata=None) -> None:
    # The SDK prints failures instead of raising.
    try:
        await allocate_resource(server_uid, resource_id, type, name, vram_usage, metadata)
    except Exception as err:
        print(f"[NanoSDK] Error allocating resource: {err}")


async def free_resource_static(server_uid, resource_id) -> None:
    try:
        await free_resource(server_uid, resource_id)
    except Exception as err:
        print(f"[NanoSDK] Error freeing resource: {err}")
