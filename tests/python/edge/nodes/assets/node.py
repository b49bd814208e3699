# The asset and resource functions, answered through the server.
from nanograph_sdk import (NanoSDK, asset_exists, get_asset_download_url, get_asset_presigned_url,
                           list_assets, resolve_asset, upload_asset)

node = NanoSDK.register_node({'uid': 'py-assets', 'name': 'Assets', 'category': 'Test', 'version': '1.0.0',
                              'inputs': [], 'outputs': [], 'parameters': []})
missing = 'sha256:' + '0' * 64


async def execute(ctx):
    small = await upload_asset(b'hello asset', {'type': 'text', 'filename': 'hello.txt', 'meta': {'k': 1}})
    big_bytes = bytes(range(256)) * 4096  # 1 MiB: a chunked upload
    big = await upload_asset(big_bytes, {'type': 'blob'})
    stream = await resolve_asset(big['hash'])
    streamed = b''.join([chunk async for chunk in stream.iter_chunked(100000)])
    try:
        await resolve_asset(missing, {'as_buffer': True})
        missing_error = None
    except Exception as err:
        missing_error = f'{type(err).__name__}: {err}'
    try:
        await resolve_asset('not-a-hash')
        bad_hash = None
    except ValueError as err:
        bad_hash = str(err)
    await NanoSDK.allocate_resource_static('py-edge', 'gpu-1', 'model', 'weights', 1024, {'a': 1})
    await NanoSDK.free_resource_static('py-edge', 'gpu-1')
    return {
        'small': [small['hash'], small['name'], small['type']],
        'buffer': [(await resolve_asset(small['hash'], {'as_buffer': True})).decode()],
        'big_ok': [streamed == big_bytes and big['size'] == len(big_bytes)],
        'exists': [await asset_exists(small['hash']), await asset_exists(missing)],
        'listed': sorted(a['hash'] for a in await list_assets({'type': 'text'})),
        'presigned': [(await get_asset_presigned_url(small['hash']))['url']],
        'download': [get_asset_download_url(small['hash'])],
        'missing': [missing_error],
        'bad_hash': [bad_hash],
    }

node['execute'] = execute
