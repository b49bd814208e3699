# An `init` that calls a host service while the worker loads (no execution yet).
from nanograph_sdk import NanoSDK, upload_asset

STATE = {}
node = NanoSDK.register_node({'uid': 'py-init-asset', 'name': 'Init Asset', 'category': 'Test',
                              'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})


async def init(exported):
    STATE['asset'] = (await upload_asset(b'loaded at init', {'type': 'init'}))['hash']


async def execute(ctx):
    return {'asset': [STATE['asset']]}

node['execute'] = execute
export = node
