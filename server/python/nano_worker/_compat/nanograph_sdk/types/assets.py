"""Asset types, as in nanograph-sdk 0.2.3."""

from io import IOBase
from typing import BinaryIO, Dict, Optional, TypedDict, Union

from nano_worker.services import is_valid_hash, validate_hash  # noqa: F401


class Asset(TypedDict):
    hash: str
    name: str
    type: str
    size: int
    created_at: Optional[str]
    meta: Optional[Dict]
    ephemeral: Optional[bool]
    alreadyExists: Optional[bool]


class AssetFilter(TypedDict, total=False):
    type: str
    hash: str


class ResolveAssetOptions(TypedDict, total=False):
    as_buffer: bool


class UploadAssetOptions(TypedDict, total=False):
    type: str
    meta: Dict
    filename: str


class AssetPresignedUrl(TypedDict):
    url: str
    expiresIn: int


AssetUploadInput = Union[str, bytes, BinaryIO, IOBase]
AssetUploadResult = Asset
