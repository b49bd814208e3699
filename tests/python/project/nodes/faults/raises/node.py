# An exception: the error status carries str(exception).
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-raise',
    'name': 'Raise',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Always fails',
    'inputs': [{'name': 'value', 'type': 'any'}],
    'outputs': [],
    'parameters': [],
})


def helper(value):
    raise ValueError(f'cannot handle {value!r}')


async def execute(ctx):
    helper((ctx.inputs.get('value') or [None])[0])

node['execute'] = execute
