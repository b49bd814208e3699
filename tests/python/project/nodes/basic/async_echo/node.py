# An `async def execute` on the event loop, reading an input and a parameter.
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-async-echo',
    'name': 'Async Echo',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Returns its text, upper-cased when `uppercase` is set',
    'inputs': [{'name': 'text', 'type': 'string', 'description': 'Text'}],
    'outputs': [{'name': 'text', 'type': 'string', 'description': 'Text'}],
    'parameters': [{'name': 'uppercase', 'type': 'boolean', 'value': False, 'default': False,
                    'label': 'Uppercase', 'description': 'Upper-case the text'}],
})


async def execute(ctx):
    text = (ctx.inputs.get('text') or [''])[0]
    upper = next((p.get('value') for p in ctx.parameters if p.get('name') == 'uppercase'), False)
    return {'text': [text.upper() if upper else text], 'unicode': ['é✓']}

node['execute'] = execute
