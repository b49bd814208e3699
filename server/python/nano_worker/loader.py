"""Loading `node.py` libraries as the SDK does (each under its own module
name, its nodes being those its import registers), then running its
optional `init` once, before the worker takes executions."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import linecache
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, List, Optional

from . import registry, services

COMPAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_compat")


@dataclass
class Library:
    """One loaded `node.py`: its nodes by uid, in registration order."""

    id: int
    path: str
    module: Optional[ModuleType] = None
    nodes: Dict[str, Dict[str, Any]] = field(default_factory=dict)


class Refusal(Exception):
    """Why a library cannot serve: the exception's type, message and the
    line of the library's own file it was raised from."""

    def __init__(self, error: BaseException, path: str, stage: str):
        super().__init__(str(error))
        self.report = describe(error, path, stage)


def describe(error: BaseException, path: str, stage: str) -> Dict[str, Any]:
    file, line = path, None
    if isinstance(error, SyntaxError) and error.filename:
        file, line = error.filename, error.lineno
    else:
        frames = traceback.extract_tb(error.__traceback__)
        # The deepest frame in the library's own file, else the deepest one.
        own = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
        chosen = own[-1] if own else (frames[-1] if frames else None)
        if chosen is not None:
            file, line = chosen.filename, chosen.lineno
    return {
        "stage": stage,
        "type": type(error).__name__,
        "message": str(error.msg if isinstance(error, SyntaxError) else error),
        "file": file,
        "line": line,
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


def install_sdk(project_root: str) -> Dict[str, Any]:
    """Puts the project root first on sys.path (as `python main.py` there
    does) and makes `nanograph_sdk` and `nanosdk_py` importable: the
    installed package when there is one, with its asset and resource
    functions routed through the server; the bundled stand-in otherwise."""
    if project_root not in sys.path:
        sys.path.insert(0, project_root)
    installed = importlib.util.find_spec("nanograph_sdk") is not None
    # Last, so an installed package (and an installed nanosdk_py) wins.
    sys.path.append(COMPAT)
    sdk = importlib.import_module("nanograph_sdk")
    if installed:
        _route_through_server(sdk)
    return {
        "name": "nanograph_sdk",
        "version": getattr(sdk, "__version__", None),
        "installed": installed,
    }


def _route_through_server(sdk: ModuleType) -> None:
    # The published functions read NANOCORE_TOKEN, which workers never get.
    resolver = importlib.import_module("nanograph_sdk.core.asset_resolver")
    uploader = importlib.import_module("nanograph_sdk.core.asset_uploader")
    core_sdk = importlib.import_module("nanograph_sdk.core.sdk")
    resources = importlib.import_module("nanograph_sdk.core.resource_manager")
    for name in ("resolve_asset", "get_asset_download_url", "get_asset_presigned_url", "asset_exists", "list_assets"):
        setattr(resolver, name, getattr(services, name))
        setattr(sdk, name, getattr(services, name))
        setattr(core_sdk, "_" + name, getattr(services, name))
    uploader.upload_asset = services.upload_asset
    sdk.upload_asset = services.upload_asset
    core_sdk._upload_asset = services.upload_asset
    resources.allocate_resource = services.allocate_resource
    resources.free_resource = services.free_resource
    core_sdk._allocate_resource = services.allocate_resource
    core_sdk._free_resource = services.free_resource
    # Registrations go to the library being loaded, not to an SDK server.
    core_sdk.NanoSDK.register_node = staticmethod(registry.register_node)


def module_name(library_id: int, path: str) -> str:
    stem = re.sub(r"[^0-9A-Za-z_]", "_", os.path.relpath(path))
    return f"nano_node_{library_id}_{stem}"


def load(library_id: int, path: str, source: Optional[str]) -> Library:
    """Imports the library; raises Refusal. `source` is the file's text as
    the server read and checked it; absent, the file is read here."""
    library = Library(library_id, path)
    name = module_name(library_id, path)
    collected = registry.collect()
    try:
        if source is None:
            with open(path, "r", encoding="utf-8") as handle:
                source = handle.read()
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        # In sys.modules so dataclasses, pickle and typing find it.
        sys.modules[name] = module
        # Tracebacks show the text that ran, even if the file changed since.
        linecache.cache[path] = (len(source), None, source.splitlines(True), path)
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except BaseException as err:
        sys.modules.pop(name, None)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise Refusal(err, path, "import") from None
    finally:
        registry.stop()
    library.module = module
    for instance in collected:
        uid = instance["definition"].get("uid")
        if not isinstance(uid, str) or not uid:
            raise Refusal(ValueError("a registered node has no string `uid`"), path, "import")
        # A uid registered twice: the later one wins, as in the SDK's map.
        library.nodes[uid] = instance
    return library


def definitions(library: Library) -> List[Dict[str, Any]]:
    """The definitions as JSON values; refuses one that JSON cannot carry."""
    out = []
    for uid, instance in library.nodes.items():
        try:
            out.append(json.loads(json.dumps(instance["definition"], allow_nan=False)))
        except (TypeError, ValueError) as err:
            raise Refusal(ValueError(f"the definition of {uid} is not JSON: {err}"), library.path, "import") from None
    return out


async def run_init(library: Library) -> None:
    """`init(node)`, async or sync (the SDK skips a sync one), given the
    module's `export`, else its only node; an exception refuses the library."""
    init = getattr(library.module, "init", None)
    if init is None or not callable(init):
        return
    node = getattr(library.module, "export", None)
    if node is None and len(library.nodes) == 1:
        node = next(iter(library.nodes.values()))
    try:
        result = init(node)
        if inspect.isawaitable(result):
            await result
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):
            raise
        raise Refusal(err, library.path, "init") from None
