# `export` and an async `init(node)`, run once before any execution.
from nanograph_sdk import NanoSDK

STATE = {'init_calls': 0, 'seen_uid': None}

node = NanoSDK.register_node({
    'uid': 'py-init',
    'name': 'Init Counter',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Reports what its init did',
    'inputs': [],
    'outputs': [{'name': 'init_calls', 'type': 'number'}],
    'parameters': [],
})


async def init(exported):
    STATE['init_calls'] += 1
    STATE['seen_uid'] = exported['definition']['uid']


async def execute(ctx):
    return {'init_calls': [STATE['init_calls']], 'seen_uid': [STATE['seen_uid']]}

node['execute'] = execute
export = node
