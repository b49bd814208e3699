# An example Python node, written for the Python SDK (nanograph-sdk) and
# served unchanged by nano-server in a supervised Python worker: it counts
# the words, lines and characters of a text and lists its most common words.
# With no Python on the machine, nano-server serves the Rust nodes and says
# why it skipped this one.
from collections import Counter

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'word-stats',
    'name': 'Word Stats',
    'category': 'Text',
    'version': '1.0.0',
    'description': 'Counts words, lines and characters, and lists the most common words (a Python node)',
    'inputs': [{'name': 'text', 'type': 'string', 'description': 'The text to count'}],
    'outputs': [
        {'name': 'words', 'type': 'number', 'description': 'Number of words'},
        {'name': 'lines', 'type': 'number', 'description': 'Number of lines'},
        {'name': 'characters', 'type': 'number', 'description': 'Number of characters'},
        {'name': 'common', 'type': 'string', 'description': 'The most common words, "word: count" each'},
    ],
    'parameters': [{'name': 'top', 'type': 'number', 'value': 3, 'default': 3,
                    'label': 'Top words', 'description': 'How many of the most common words to list'}],
})


async def execute(ctx):
    text = (ctx.inputs.get('text') or [''])[0]
    if not isinstance(text, str):
        raise ValueError(f'text must be a string, got {type(text).__name__}')
    top = next((p.get('value') for p in ctx.parameters if p.get('name') == 'top'), 3)
    words = [word.strip('.,;:!?"\'()[]').lower() for word in text.split()]
    words = [word for word in words if word]
    await ctx.context['send_status']({'type': 'running', 'message': f'counted {len(words)} words'})
    common = Counter(words).most_common(int(top))
    return {
        'words': [len(words)],
        'lines': [len(text.splitlines())],
        'characters': [len(text)],
        'common': [f'{word}: {count}' for word, count in common],
    }

node['execute'] = execute
