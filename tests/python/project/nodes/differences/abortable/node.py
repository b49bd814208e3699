# Waits until aborted (or 10 s): the abort's final message differs
# ("Execution aborted" on nano-server, "Execution cancelled" in the SDK).
import asyncio

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-abortable',
    'name': 'Abortable',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Runs until stopped',
    'inputs': [],
    'outputs': [],
    'parameters': [],
})


async def execute(ctx):
    await ctx.context['send_status']({'type': 'running', 'message': 'waiting for a stop'})
    for _ in range(1000):
        if ctx.context['is_aborted']():
            raise Exception('Execution aborted')
        await asyncio.sleep(0.01)
    return {'stopped': [False]}

node['execute'] = execute
