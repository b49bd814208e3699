"""`progress-steps`: a slow node that reports progress and honours abort.

Python twin of nodes/utility/progress_node (Rust): same definition, one
`running` status per step ("Step 2/5", progress {step, total}), output
{"result": ["done"]}, "Execution aborted" when aborted.
"""

import asyncio

from nanograph_sdk import NanoSDK

from compat import NodeError, as_u64, param_value

definition = {
    'uid': 'progress-steps',
    'name': 'Progress Steps',
    'category': 'Utility',
    'version': '1.0.0',
    'description': 'Works through `steps` steps of `delay_ms` each, reporting progress',
    'inputs': [],
    'outputs': [
        {'name': 'result', 'type': 'string'},
    ],
    'parameters': [
        {'name': 'steps', 'type': 'number', 'value': 5, 'default': 5, 'label': 'Steps', 'min': 0},
        {
            'name': 'delay_ms',
            'type': 'number',
            'value': 100,
            'default': 100,
            'label': 'Delay per step (ms)',
            'min': 0,
        },
    ],
}

node = NanoSDK.register_node(definition)


async def execute(ctx):
    steps = param_value(ctx, definition, 'steps', as_u64)
    delay_ms = param_value(ctx, definition, 'delay_ms', as_u64)
    send_status = ctx.context['send_status']
    is_aborted = ctx.context['is_aborted']
    for step in range(1, steps + 1):
        if is_aborted():
            raise NodeError('Execution aborted')
        await asyncio.sleep(delay_ms / 1000)
        # send_status returns a Task; awaiting it keeps this status ahead of
        # the `complete` the SDK sends once we return.
        await send_status({
            'type': 'running',
            'message': f'Step {step}/{steps}',
            'progress': {'step': step, 'total': steps},
        })
    return {'result': ['done']}


node['execute'] = execute
export = node
