# The SDK README's "Sending progress updates" example. The lines between
# the two markers are the README's, verbatim (../shared/seed/
# nano-sdk-python-README.md); around them only what any node file needs:
# the imports it uses, a definition, the registration.
import asyncio

from nanosdk_py import NanoSDK

node = NanoSDK.register_node({
    'uid': 'readme-progress',
    'name': 'README Progress',
    'category': 'Processing',
    'version': '1.0.0',
    'description': 'The README progress example',
    'inputs': [],
    'outputs': [{'name': 'result', 'type': 'string', 'description': 'done'}],
    'parameters': [],
})

# --- verbatim from the README ---
async def execute_node(ctx):
    total_steps = 5
    for step in range(1, total_steps + 1):
        # Abort fast if needed
        if ctx.context['is_aborted']():
            raise Exception('Aborted!')
        # Simulate work
        await asyncio.sleep(1)
        # Send progress update
        await ctx.context['send_status']({
            'type': 'running',
            'message': f'Processing step {step}/{total_steps}',
            'progress': {'step': step, 'total': total_steps}
        })
    # Just return the outputs; the SDK will send the 'complete' status automatically
    return {'result': 'done'}
# --- end of the README's lines ---

node['execute'] = execute_node
