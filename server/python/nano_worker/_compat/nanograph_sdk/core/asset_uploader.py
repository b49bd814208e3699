"""Asset uploads, answered by nano-server (the token stays in the server)."""

from nano_worker.services import upload_asset  # noqa: F401

from ..types.assets import AssetUploadResult, UploadAssetOptions  # noqa: F401
