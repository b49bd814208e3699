# An `init` that raises refuses the library.
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'py-init-raises', 'name': 'Init Raises', 'category': 'Test',
                              'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})


async def init(exported):
    raise RuntimeError('model file missing: weights.bin')

export = node
