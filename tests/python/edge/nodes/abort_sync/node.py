# A thread node that polls is_aborted and returns after an abort.
import time

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'py-abort-sync', 'name': 'Abort Sync', 'category': 'Test',
                              'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})


def execute(ctx):
    ctx.context['send_status']({'type': 'running', 'message': 'polling'})
    for _ in range(1000):
        if ctx.context['is_aborted']():
            return {'noticed': [True]}
        time.sleep(0.01)
    return {'noticed': [False]}

node['execute'] = execute
