# A plain `def execute`: both servers run it in a thread, off the event loop.
import threading

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-sync-sum',
    'name': 'Sync Sum',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Adds its inputs, in a thread',
    'inputs': [{'name': 'a', 'type': 'number'}, {'name': 'b', 'type': 'number'}],
    'outputs': [{'name': 'sum', 'type': 'number'}],
    'parameters': [],
})


def execute(ctx):
    a = ctx.inputs['a'][0]
    b = ctx.inputs['b'][0]
    return {'sum': [a + b], 'off_main_thread': [threading.current_thread() is not threading.main_thread()]}

node['execute'] = execute
