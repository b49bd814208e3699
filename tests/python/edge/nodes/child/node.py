# Starts a process that outlives its worker, with every descriptor it may
# inherit: the channel must not be one of them.
import subprocess
import sys

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'py-child', 'name': 'Child', 'category': 'Test', 'version': '1.0.0',
                              'inputs': [], 'outputs': [], 'parameters': []})


def execute(ctx):
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], close_fds=False)
    return {'pid': [child.pid], 'argv': [sys.argv[1:]]}

node['execute'] = execute
