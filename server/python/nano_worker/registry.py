"""The nodes a library's import registers with `NanoSDK.register_node`:
the loader opens a collection around each import, both SDK flavours
(bundled or installed) record into it."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

_collecting: Optional[List[Dict[str, Any]]] = None


def register_node(definition: Dict[str, Any]) -> Dict[str, Any]:
    """nanograph-sdk 0.2.3's `NanoSDK.register_node`: the definition gets
    `type: server`, and `execute` is the node's to set."""
    instance: Dict[str, Any] = {
        "definition": {**definition, "type": "server"},
        "execute": lambda ctx: {},
    }
    if _collecting is not None:
        _collecting.append(instance)
    return instance


def collect() -> List[Dict[str, Any]]:
    """Starts collecting the registrations of one library's import."""
    global _collecting
    _collecting = []
    return _collecting


def stop() -> None:
    global _collecting
    _collecting = None
