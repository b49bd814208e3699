"""Checks the stand-in NanoCore against the published Python SDK.

    python sdk_check.py <path-to-nanocore-standin-binary>

Run it from a venv with `nanograph-sdk==0.2.3`. It starts the binary, points
the SDK at it (NANOCORE_HTTP_ENDPOINT, NANOCORE_TOKEN) and calls every client
function the SDK has for NanoCore: upload (bytes, a file path, a stream of
unknown length), resolve, download URL, exists, list, presigned URL, and
resource allocate/free. Any failure exits non-zero with what went wrong; the
last line is a one-line summary.
"""

import asyncio
import contextlib
import hashlib
import io
import os
import select
import subprocess
import sys
import tempfile

TOKEN = "sdk-check-token"


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def start_standin(binary):
    """Starts the binary and answers (process, url) once it printed its line."""
    proc = subprocess.Popen(
        [binary, "--token", TOKEN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("NANOCORE_STANDIN http://"):
        proc.kill()
        raise CheckFailed(f"the stand-in did not print 'NANOCORE_STANDIN <url>' within 30 s (got {line!r})")
    return proc, line.split(" ", 1)[1]


class UnsizedStream(io.RawIOBase):
    """A readable stream with no file number, so aiohttp cannot know its
    length and sends the upload with chunked transfer encoding."""

    def __init__(self, data, piece=64 * 1024):
        self._data, self._pos, self._piece = data, 0, piece

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self._piece, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def asset_id(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def run_checks(url):
    # Imported here so a missing SDK fails with a clear message, not at load.
    import aiohttp
    import nanograph_sdk as sdk
    from nanograph_sdk import NanoSDK
    from nanograph_sdk.core import asset_utils, resource_manager

    check(sdk.__version__ == "0.2.3", f"expected nanograph-sdk 0.2.3, found {sdk.__version__}")
    done = []

    # Upload from bytes, with a type, a meta and a file name.
    text = b"hello from sdk_check\n"
    meta = {"source": "sdk_check", "n": 1}
    uploaded = await sdk.upload_asset(text, {"type": "text", "meta": meta, "filename": "hello.txt"})
    expected = {
        "hash": asset_id(text), "name": "hello.txt", "type": "text", "size": len(text),
        "ephemeral": False, "alreadyExists": False,
        # The SDK sends str(meta), a Python repr, which is not JSON: it comes back as text.
        "meta": str(meta),
    }
    for key, value in expected.items():
        check(uploaded.get(key) == value, f"upload_asset answered {key}={uploaded.get(key)!r}, expected {value!r}")
    check(isinstance(uploaded.get("created_at"), str), f"upload_asset answered no created_at: {uploaded}")
    check(sdk.is_valid_hash(uploaded["hash"]), f"not an asset id: {uploaded['hash']}")
    hash_ = uploaded["hash"]
    again = await NanoSDK.upload_asset_static(text, {"type": "text"})
    check(again["hash"] == hash_ and again["alreadyExists"] is True,
          f"uploading the same bytes again: expected the same hash and alreadyExists true, got {again}")
    done.append("upload_asset")

    # Upload from a file path (aiohttp sends a Content-Length) and from a
    # stream of unknown length (chunked), 8 MiB each.
    big = os.urandom(8 * 1024 * 1024)
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(big)
        f.flush()
        from_path = await sdk.upload_asset(f.name, {"type": "blob"})
    check(from_path["hash"] == asset_id(big) and from_path["size"] == len(big),
          f"upload from a path: {from_path}")
    check(from_path["name"] == os.path.basename(f.name), f"upload from a path named {from_path['name']!r}")
    streamed = os.urandom(8 * 1024 * 1024 + 3)
    from_stream = await sdk.upload_asset(io.BufferedReader(UnsizedStream(streamed)), {"type": "blob"})
    check(from_stream["hash"] == asset_id(streamed) and from_stream["size"] == len(streamed),
          f"chunked upload: {from_stream}")
    done.append("upload_asset(path, chunked stream)")

    # Resolve: the SDK's buffer mode returns the bytes.
    check(await sdk.resolve_asset(hash_, {"as_buffer": True}) == text, "resolve_asset(as_buffer) returned other bytes")
    check(await NanoSDK.resolve_asset_static(from_stream["hash"], {"as_buffer": True}) == streamed,
          "resolve_asset_static returned other bytes for the chunked upload")
    done.append("resolve_asset")

    download_url = sdk.get_asset_download_url(hash_)
    check(download_url == f"{url}/assets/{hash_}/download", f"get_asset_download_url: {download_url}")
    done.append("get_asset_download_url")

    unknown = asset_id(b"never uploaded")
    check(await sdk.asset_exists(hash_) is True, "asset_exists is false for an uploaded asset")
    check(await sdk.asset_exists(unknown) is False, "asset_exists is true for an unknown asset")
    # asset_exists turns any error into False; the stand-in must answer 200 there.
    answer = await asset_utils.create_json_request(f"/assets/{unknown}/exists")
    check(answer == {"exists": False}, f"/exists for an unknown asset answered {answer}")
    done.append("asset_exists")

    everything = await sdk.list_assets()
    hashes = [a["hash"] for a in everything]
    check(sorted(hashes) == sorted({hash_, from_path["hash"], from_stream["hash"]}), f"list_assets: {hashes}")
    by_hash = await sdk.list_assets({"hash": hash_})
    check([a["hash"] for a in by_hash] == [hash_], f"list_assets(hash) answered {by_hash}")
    blobs = await sdk.list_assets({"type": "blob"})
    check(sorted(a["hash"] for a in blobs) == sorted([from_path["hash"], from_stream["hash"]]),
          f"list_assets(type=blob) answered {blobs}")
    check(await sdk.list_assets({"type": "nothing"}) == [], "list_assets(type=nothing) is not empty")
    done.append("list_assets")

    presigned = await sdk.get_asset_presigned_url(hash_)
    check(presigned.get("expiresIn") == 3600 and presigned.get("url", "").startswith(f"{url}/presigned/{hash_}?sig="),
          f"get_asset_presigned_url answered {presigned}")
    async with aiohttp.ClientSession() as session:  # no bearer: the URL is the credential
        async with session.get(presigned["url"]) as response:
            check(response.status == 200 and await response.read() == text,
                  f"the presigned URL answered {response.status}")
    check(await NanoSDK.get_asset_presigned_url_static(hash_) == presigned, "the static presigned URL differs")
    done.append("get_asset_presigned_url")

    # Resources: the module functions raise on any failure and answer the reply.
    allocated = await resource_manager.allocate_resource(
        "sdk-check-server", "model-1", "model", "Tiny model", 1024, {"quantized": True})
    check(allocated.get("success") is True and allocated.get("action") == "ALLOCATE"
          and allocated.get("resourceId") == "model-1", f"allocate_resource answered {allocated}")
    freed = await resource_manager.free_resource("sdk-check-server", "model-1")
    check(freed.get("success") is True and freed.get("action") == "FREE" and freed.get("resourceId") == "model-1",
          f"free_resource answered {freed}")
    # The NanoSDK statics (what node code calls) print errors instead of raising.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        await NanoSDK.allocate_resource_static("sdk-check-server", "model-2", "model", "Other", 0)
        await NanoSDK.free_resource_static("sdk-check-server", "model-2")
    check(printed.getvalue() == "", f"the NanoSDK resource statics reported: {printed.getvalue().strip()}")
    done.append("allocate/free_resource")

    # A wrong token is refused with 401.
    os.environ["NANOCORE_TOKEN"] = "wrong-token"
    try:
        await sdk.resolve_asset(hash_, {"as_buffer": True})
        raise CheckFailed("resolve_asset with a wrong token succeeded")
    except aiohttp.ClientError as e:
        check("401" in str(e), f"a wrong token: expected 401, got {e}")
    finally:
        os.environ["NANOCORE_TOKEN"] = TOKEN
    done.append("401 on a wrong token")
    return done


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python sdk_check.py <path-to-nanocore-standin-binary>")
    try:
        proc, url = start_standin(sys.argv[1])
    except (CheckFailed, OSError) as e:
        sys.exit(f"sdk_check: FAILED: {e}")
    os.environ["NANOCORE_HTTP_ENDPOINT"] = url + "/"  # the SDK strips the slash
    os.environ["NANOCORE_TOKEN"] = TOKEN
    try:
        done = asyncio.run(run_checks(url))
        # Closing its standard input must stop it.
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise CheckFailed("the stand-in kept running after its standard input closed")
    except Exception as e:  # any SDK error is a failed check, reported in one line
        sys.exit(f"sdk_check: FAILED: {type(e).__name__}: {e}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"sdk_check: nanograph-sdk 0.2.3 against the stand-in at {url}: {len(done)} passed, 0 failed "
          f"({', '.join(done)})")


if __name__ == "__main__":
    main()
