# Progress statuses, awaited, before the outputs.
import asyncio

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-progress',
    'name': 'Progress',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Reports each step',
    'inputs': [],
    'outputs': [{'name': 'steps', 'type': 'number'}],
    'parameters': [{'name': 'steps', 'type': 'number', 'value': 3, 'default': 3}],
})


async def execute(ctx):
    total = next((p.get('value') for p in ctx.parameters if p.get('name') == 'steps'), 3)
    for step in range(1, total + 1):
        await asyncio.sleep(0.01)
        await ctx.context['send_status']({
            'type': 'running',
            'message': f'Step {step}/{total}',
            'progress': {'step': step, 'total': total},
        })
    return {'steps': [total]}

node['execute'] = execute
