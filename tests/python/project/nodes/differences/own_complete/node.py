# A node that sends its own `complete`: it ends the execution, and the
# return value is ignored. (The SDK sends a second `complete`.)
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-own-complete',
    'name': 'Own Complete',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Completes through send_status',
    'inputs': [],
    'outputs': [{'name': 'value', 'type': 'string'}],
    'parameters': [],
})


async def execute(ctx):
    await ctx.context['send_status']({'type': 'running', 'message': 'about to finish'})
    await ctx.context['send_status']({
        'type': 'complete', 'message': 'Finished by the node', 'outputs': {'value': ['sent']},
    })
    await ctx.context['send_status']({'type': 'running', 'message': 'too late'})
    return {'value': ['returned']}

node['execute'] = execute
