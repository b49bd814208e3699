"""nano_worker: the Python side of nano-server's Python worker kind.

One worker process runs one or more SDK `node.py` libraries and speaks the
worker protocol (`docs/worker-protocol.md`) with the server over an
inherited socket. Standard library only; Python >= 3.9.

Not wired into the server yet: the Rust supervisor that starts this
runtime comes with issue 21. Run it by hand with
`PYTHONPATH=server/python python3 -m nano_worker --channel-fd N`.
"""

PROTOCOL = 1
RUNTIME = "python"
