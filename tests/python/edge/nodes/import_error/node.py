from nanograph_sdk import NanoSDK
import a_module_nobody_installed  # noqa: F401

node = NanoSDK.register_node({'uid': 'py-import', 'name': 'Import', 'category': 'Test'})
