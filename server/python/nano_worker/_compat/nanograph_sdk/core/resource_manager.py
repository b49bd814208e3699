"""Resource notifications, answered by nano-server."""

from nano_worker.services import allocate_resource, free_resource  # noqa: F401
