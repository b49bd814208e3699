"""Asset reads, answered by nano-server (the token stays in the server)."""

from nano_worker.services import (  # noqa: F401
    asset_exists,
    get_asset_download_url,
    get_asset_presigned_url,
    list_assets,
    resolve_asset,
)

from ..types.assets import AssetPresignedUrl, ResolveAssetOptions  # noqa: F401
