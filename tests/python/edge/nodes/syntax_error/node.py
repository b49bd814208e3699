from nanograph_sdk import NanoSDK

node = NanoSDK.register_node({'uid': 'py-syntax', 'name': 'Syntax', 'category': 'Test'})

def execute(ctx)
    return {}
