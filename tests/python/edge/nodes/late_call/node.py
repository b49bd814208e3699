# Calls a host service after ending its execution with its own `complete`:
# the call fails in the worker, never naming an id the server let go.
from nanograph_sdk import NanoSDK, upload_asset

STATE = {}
node = NanoSDK.register_node({'uid': 'py-late-call', 'name': 'Late Call', 'category': 'Test',
                              'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})


async def execute(ctx):
    await ctx.context['send_status']({'type': 'complete', 'outputs': {'early': [True]}})
    try:
        await upload_asset(b'too late', {'type': 'late'})
        STATE['late'] = 'uploaded'
    except Exception as err:
        STATE['late'] = f'{type(err).__name__}: {err}'
    return {'ignored': [True]}


async def report(ctx):
    return {'late': [STATE.get('late')]}

node['execute'] = execute
reporter = NanoSDK.register_node({'uid': 'py-late-report', 'name': 'Late Report', 'category': 'Test',
                                  'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})
reporter['execute'] = report
