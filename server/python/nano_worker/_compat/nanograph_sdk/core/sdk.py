"""`NanoSDK` as node files use it: `register_node` and the asset helpers.
Serving is nano-server's, so there is nothing to start or stop here."""

from typing import Any, Callable, List

from nano_worker import registry, services


class NanoSDK:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.shutdown_handlers: List[Callable[[], Any]] = []

    register_node = staticmethod(registry.register_node)

    def on_shutdown(self, handler: Callable[[], Any]) -> None:
        self.shutdown_handlers.append(handler)

    async def resolve_asset(self, hash, options=None):
        return await services.resolve_asset(hash, options)

    def get_asset_download_url(self, hash):
        return services.get_asset_download_url(hash)

    async def get_asset_presigned_url(self, hash):
        return await services.get_asset_presigned_url(hash)

    async def upload_asset(self, file, options=None):
        return await services.upload_asset(file, options)

    resolve_asset_static = staticmethod(services.resolve_asset)
    get_asset_download_url_static = staticmethod(services.get_asset_download_url)
    get_asset_presigned_url_static = staticmethod(services.get_asset_presigned_url)
    upload_asset_static = staticmethod(services.upload_asset)
    allocate_resource_static = staticmethod(services.allocate_resource_static)
    free_resource_static = staticmethod(services.free_resource_static)
