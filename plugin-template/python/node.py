# A Python node for nano-server, written against the Python SDK
# (nanograph-sdk): nano-server serves it unchanged in a supervised Python
# worker, and so does the SDK. Save an edit and it goes live; a syntax error
# keeps the old version serving and logs where it is.
# Guide: docs/python-nodes.md in the nano-server repository.
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'template-node',
    'name': 'Template Node',
    'category': 'Examples',
    'version': '0.1.0',
    'description': 'Splits a text into words and counts them',
    'inputs': [{'name': 'text', 'type': 'string', 'description': 'Text to split'}],
    'outputs': [
        {'name': 'words', 'type': 'string', 'description': 'The words, one value each'},
        {'name': 'count', 'type': 'number', 'description': 'How many words'},
    ],
    'parameters': [{'name': 'min_length', 'type': 'number', 'value': 1, 'default': 1,
                    'label': 'Minimum length', 'description': 'Shorter words are dropped'}],
})


def parameter(ctx, name, default):
    """The graph's value of parameter `name`, else `default`."""
    return next((p.get('value') for p in ctx.parameters if p.get('name') == name), default)


async def execute(ctx):
    # Inputs arrive as lists, one value per connection: ["some text"].
    text = (ctx.inputs.get('text') or [''])[0]
    min_length = int(parameter(ctx, 'min_length', 1))
    if min_length < 1:
        # An exception is an `error` status with its message.
        raise ValueError('min_length must be at least 1')
    candidates = text.split()
    words = []
    for done, word in enumerate(candidates, start=1):
        if ctx.context['is_aborted']():
            raise RuntimeError('aborted')
        if len(word) >= min_length:
            words.append(word)
        if done % 100 == 0:
            await ctx.context['send_status']({
                'type': 'running', 'message': f'{done} of {len(candidates)} words',
                'progress': {'step': done, 'total': len(candidates)},
            })
    # Outputs map each port to a list of values.
    return {'words': words, 'count': [len(words)]}

node['execute'] = execute
