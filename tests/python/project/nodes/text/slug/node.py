# A helper imported from the project root, as `python main.py` there allows.
from nanograph_sdk import NanoSDK
from nodes.text.slug.helpers import slugify

node = NanoSDK.register_node({
    'uid': 'py-slug',
    'name': 'Slug',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Slugifies its text with a helper module',
    'inputs': [{'name': 'text', 'type': 'string'}],
    'outputs': [{'name': 'slug', 'type': 'string'}],
    'parameters': [],
})


async def execute(ctx):
    return {'slug': [slugify(ctx.inputs['text'][0])]}

node['execute'] = execute
