#!/usr/bin/env python3
"""Fails when two Rust files import names from each other (issue 20's rule).

A file's imports are the `crate::`, `super::` and `self::` paths it names
(in `use` items and inline). Each path is resolved to the file that defines
the module it names, as far as the path goes. A child module using its
parent's items through `super::` is allowed, and so is a folder front
(`mod.rs`/`lib.rs`) naming its own children (so a child may name its
parent, the front, by `super::` or, under the crate root, `crate::`); any other pair of files that
name each other is reported.

    python3 .ci/import_cycles.py server/src plugin-abi/src
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def group_paths(prefix, rest, body):
    """Expands `use crate::a::{b, c::d, e::{f}}` into its paths (one level deep is enough here)."""
    out = []
    depth, item = 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            item = item.strip()
            if item:
                head = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", item)
                if head and head.group(0) not in ("self",):
                    out.append((prefix, rest + "::" + head.group(0)))
            item = ""
        else:
            item += ch
    return out


def check(root):
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[module_of(root, path)] = path
    # A front's re-exports (`pub use child::{A, B}`): a name taken from the
    # front is charged to the file that defines it.
    reexports = {}
    for module, path in files.items():
        if os.path.basename(path) not in ("mod.rs", "lib.rs", "main.rs"):
            continue
        text = strip_comments(open(path, encoding="utf-8").read())
        names = {}
        for m in re.finditer(r"\b(?:pub(?:\([a-z]+\))?\s+)?use\s+(?:self::)?([a-z_][a-z0-9_]*)((?:::[a-z_][a-z0-9_]*)*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*(?:\s+as\s+[A-Za-z_][A-Za-z0-9_]*)?);", text, re.S):
            child = module + (m.group(1),) + tuple(p for p in m.group(2).split("::") if p)
            while child not in files and len(child) > len(module) + 1:
                child = child[:-1]
            if child not in files:
                continue
            body = m.group(3).strip("{}")
            for item in body.split(","):
                item = item.strip()
                if not item:
                    continue
                name = item.split(" as ")[-1].strip().split("::")[-1]
                names[name] = child
        reexports[module] = names
    edges = {}
    for module, path in files.items():
        text = strip_comments(open(path, encoding="utf-8").read())
        refs = [(m.group(1), m.group(2)) for m in PATH.finditer(text)]
        for m in USE_GROUP.finditer(text):
            refs += group_paths(m.group(1), m.group(2), m.group(3))
        is_front = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        targets = set()
        for kind, rest in refs:
            parts = [p for p in rest.split("::") if p]
            if kind == "crate":
                base = ()
            elif kind == "self":
                base = module if is_front else module[:-1] + (module[-1],)
            else:  # super
                base = module[:-1] if not is_front else module[:-1]
                while parts and parts[0] == "super":
                    parts = parts[1:]
                    base = base[:-1]
            # The longest prefix naming a file.
            best = None
            for i in range(len(parts), -1, -1):
                candidate = base + tuple(parts[:i])
                if candidate in files:
                    best = candidate
                    break
            if best is not None and len(parts) > len(best) - len(base):
                following = parts[len(best) - len(base)]
                best = reexports.get(best, {}).get(following, best)
            if best is not None and best != module:
                targets.add((best, kind))
        edges[module] = targets
    bad = []
    for a, targets in edges.items():
        for b, kind in targets:
            back = [k for (t, k) in edges.get(b, ()) if t == a]
            if not back or a > b:
                continue
            # A child naming its parent (`super::`, or `crate::` for a child of
            # the crate root), while the parent, its folder front, names the
            # child: allowed.
            if b[:-1] == a or a[:-1] == b:
                continue
            bad.append((files[a], files[b]))
    return bad


def main(roots):
    bad = []
    for root in roots:
        bad += check(root)
    for a, b in sorted(bad):
        print(f"import cycle: {a} <-> {b}")
    print(f"{len(bad)} pair(s) of files import from each other")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["server/src", "plugin-abi/src"]))
