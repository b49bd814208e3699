"""nano-server's stand-in for nanograph-sdk 0.2.3, used where the package
is not installed: the same public names, with serving left to nano-server
and the asset functions answered by it."""

from .core.asset_resolver import (
    asset_exists,
    get_asset_download_url,
    get_asset_presigned_url,
    list_assets,
    resolve_asset,
)
from .core.asset_uploader import upload_asset
from .core.interfaces import (
    ExecuteFunction,
    ExecutionContext,
    NanoSDKConfig,
    NodeContext,
    NodeDefinition,
    NodeDefinitionsMessage,
    NodeInputs,
    NodeInstance,
    NodeOutputs,
    NodeResponse,
    NodeStatus,
    NodeType,
    Parameter,
    ParameterType,
    Port,
    PortType,
)
from .core.sdk import NanoSDK
from .types.assets import (
    Asset,
    AssetFilter,
    AssetPresignedUrl,
    AssetUploadResult,
    ResolveAssetOptions,
    UploadAssetOptions,
    is_valid_hash,
    validate_hash,
)

__version__ = "0.2.3"

__all__ = [
    "NanoSDK",
    "NanoSDKConfig",
    "NodeInstance",
    "ExecutionContext",
    "ExecuteFunction",
    "NodeDefinition",
    "Port",
    "PortType",
    "Parameter",
    "ParameterType",
    "NodeType",
    "NodeInputs",
    "NodeOutputs",
    "NodeStatus",
    "NodeContext",
    "NodeResponse",
    "NodeDefinitionsMessage",
    "resolve_asset",
    "get_asset_download_url",
    "get_asset_presigned_url",
    "asset_exists",
    "list_assets",
    "ResolveAssetOptions",
    "AssetPresignedUrl",
    "upload_asset",
    "UploadAssetOptions",
    "AssetUploadResult",
    "validate_hash",
    "is_valid_hash",
    "Asset",
    "AssetFilter",
]
