# Outputs JSON cannot carry, and a non-dict status.
from nanograph_sdk import NanoSDK

nan = NanoSDK.register_node({'uid': 'py-nan', 'name': 'NaN', 'category': 'Test', 'version': '1.0.0',
                             'inputs': [], 'outputs': [], 'parameters': []})
raw = NanoSDK.register_node({'uid': 'py-bytes', 'name': 'Bytes', 'category': 'Test', 'version': '1.0.0',
                             'inputs': [], 'outputs': [], 'parameters': []})


async def run_nan(ctx):
    await ctx.context['send_status']('not a dict')
    await ctx.context['send_status']({'type': 'running', 'message': 'bad', 'value': {1, 2}})
    return {'x': [float('nan')]}


async def run_bytes(ctx):
    print('a print goes to stdout, not to the channel')
    return {'x': [b'raw']}

nan['execute'] = run_nan
raw['execute'] = run_bytes
