# An import that takes a while (a large package would): pings are answered
# meanwhile. Outside nodes/, so only the test that wants it loads it.
import time

from nanograph_sdk import NanoSDK

time.sleep(3.0)
node = NanoSDK.register_node({'uid': 'py-slow-import', 'name': 'Slow Import', 'category': 'Test',
                              'version': '1.0.0', 'inputs': [], 'outputs': [], 'parameters': []})
