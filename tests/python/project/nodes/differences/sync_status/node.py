# A plain `def execute` that sends statuses: nano-server forwards them;
# under the SDK `send_status` fails there ("no running event loop").
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-sync-status',
    'name': 'Sync Status',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Sends progress from a thread',
    'inputs': [],
    'outputs': [{'name': 'done', 'type': 'boolean'}],
    'parameters': [],
})


def execute(ctx):
    for step in (1, 2):
        ctx.context['send_status']({
            'type': 'running', 'message': f'thread step {step}', 'progress': {'step': step, 'total': 2},
        })
    return {'done': [True]}

node['execute'] = execute
