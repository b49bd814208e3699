"""`simple-text`: returns its text input, upper-cased when asked.

Python twin of nodes/processing/simple_text_node (Rust): same definition,
same outputs ({"text": ["HELLO"]}), same error messages.
"""

from nanograph_sdk import NanoSDK

from compat import as_bool, as_str, input_value, param_value

definition = {
    'uid': 'simple-text',
    'name': 'Simple Text',
    'category': 'Processing',
    'version': '1.0.0',
    'description': 'Returns the text, upper-cased if `uppercase` is set',
    'inputs': [
        {'name': 'text', 'type': 'string', 'description': 'Text to process'},
    ],
    'outputs': [
        {'name': 'text', 'type': 'string', 'description': 'Processed text'},
    ],
    'parameters': [
        {
            'name': 'uppercase',
            'type': 'boolean',
            'value': False,
            'default': False,
            'label': 'Uppercase',
            'description': 'Convert the text to upper case',
        },
    ],
}

node = NanoSDK.register_node(definition)


async def execute(ctx):
    text = input_value(ctx, 'text', as_str)
    uppercase = param_value(ctx, definition, 'uppercase', as_bool)
    if uppercase:
        text = text.upper()
    # Outputs map each port to a list; the SDK sends them as returned.
    return {'text': [text]}


node['execute'] = execute
export = node
