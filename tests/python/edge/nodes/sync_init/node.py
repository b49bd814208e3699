# A sync `init`: nano-server runs it (the SDK skips it with a warning).
import sys

from nanosdk_py import NanoSDK

STATE = {}
node = NanoSDK.register_node({'uid': 'py-sync-init', 'name': 'Sync Init', 'category': 'Test', 'version': '1.0.0',
                              'inputs': [], 'outputs': [], 'parameters': []})


def init(exported):
    STATE['ready'] = exported is node


async def execute(ctx):
    return {'ready': [STATE.get('ready', False)], 'module_registered': [__name__ in sys.modules]}

node['execute'] = execute
export = node
