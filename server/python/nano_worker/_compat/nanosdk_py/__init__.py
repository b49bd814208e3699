"""`nanosdk_py`, the name the SDK's README imports: the same module as
`nanograph_sdk` (the bundled one, or the installed package)."""

import sys

import nanograph_sdk

sys.modules[__name__] = nanograph_sdk
