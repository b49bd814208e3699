# `graph_node`, `instance_id` and `ctx.parameters` as the node sees them.
from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({
    'uid': 'py-context',
    'name': 'Context',
    'category': 'Test',
    'version': '1.0.0',
    'description': 'Returns its execution context',
    'inputs': [],
    'outputs': [{'name': 'instance_id', 'type': 'string'}],
    'parameters': [{'name': 'label', 'type': 'text', 'value': 'default', 'default': 'default'}],
})


async def execute(ctx):
    graph_node = ctx.context['graph_node']
    return {
        'instance_id': [ctx.context['instance_id']],
        'graph_node_id': [graph_node['id']],
        'graph_node_x': [graph_node.get('x')],
        'parameters': [ctx.parameters],
        'aborted': [ctx.context['is_aborted']()],
    }

node['execute'] = execute
