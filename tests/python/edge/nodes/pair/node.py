# Two nodes from one file: both are the library's.
from nanograph_sdk import NanoSDK

first = NanoSDK.register_node({'uid': 'py-pair-a', 'name': 'Pair A', 'category': 'Test', 'version': '1.0.0',
                               'inputs': [], 'outputs': [], 'parameters': [], 'type': 'client'})
second = NanoSDK.register_node({'uid': 'py-pair-b', 'name': 'Pair B', 'category': 'Test', 'version': '1.0.0',
                                'inputs': [], 'outputs': [], 'parameters': [], 'width': 240})


async def run_a(ctx):
    return {'which': ['a']}


def run_b(ctx):
    return {'which': ['b']}

first['execute'] = run_a
second['execute'] = run_b
