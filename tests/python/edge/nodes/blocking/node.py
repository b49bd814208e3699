# Nodes that block: the event loop itself, or their own thread.
import time

from nanograph_sdk import NanoSDK

# Long enough that a pong inside it cannot be the loop freeing up, even on a loaded machine.
SECONDS = 3.0

loop_blocker = NanoSDK.register_node({'uid': 'py-block-loop', 'name': 'Block Loop', 'category': 'Test',
                                      'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})
thread_blocker = NanoSDK.register_node({'uid': 'py-block-thread', 'name': 'Block Thread', 'category': 'Test',
                                        'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})


async def block_loop(ctx):
    time.sleep(SECONDS)
    return {'slept': [SECONDS]}


def block_thread(ctx):
    time.sleep(SECONDS)
    return {'slept': [SECONDS]}

loop_blocker['execute'] = block_loop
thread_blocker['execute'] = block_thread
