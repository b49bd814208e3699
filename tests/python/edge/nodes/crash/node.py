# Ends its process: only the server can report it.
import ctypes
import os

from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'py-exit', 'name': 'Exit', 'category': 'Test', 'version': '1.0.0',
                              'inputs': [], 'outputs': [], 'parameters': []})


def execute(ctx):
    os._exit(3)

node['execute'] = execute

segfault = NanoSDK.register_node({'uid': 'py-segfault', 'name': 'Segfault', 'category': 'Test', 'version': '1.0.0',
                                  'inputs': [], 'outputs': [], 'parameters': []})


def crash(ctx):
    ctypes.string_at(0)

segfault['execute'] = crash
