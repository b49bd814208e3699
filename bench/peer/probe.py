"""Probe a Nano node server over its wire protocol and print every frame.

Usage: python probe.py <port> [host]      (e.g. .venv/bin/python probe.py 3117)

Works against any node server (this Python peer, our Rust server, ...):
GET /, then over one WebSocket on / reads the handshake and runs
  - simple-text   inputs {"text": ["hello"]}, uppercase=true -> {"text": ["HELLO"]}
  - complex-math  a=40 b=2 operation=power, and a=1 b=0 operation=divide (error)
  - progress-steps steps=3 delay_ms=20 -> 3 progress statuses, {"result": ["done"]}
  - an unknown nodeUid (error naming the uid)
  - progress-steps steps=50 then stop_workflow_instance (ack, no complete)
printing each frame received as full JSON (the handshake's node definitions
too). Exits 1 if an expected outcome is not seen. Needs only the
`websockets` package (installed in .venv with the SDK).
"""

import asyncio
import json
import sys
import time
import urllib.request

import websockets

TIMEOUT = 10.0


def graph_node(node_id, uid, params):
    return {
        'id': node_id,
        'uid': uid,
        'serverUid': 'probe',
        'x': 0,
        'y': 0,
        'parameters': [{'name': k, 'type': 'any', 'value': v} for k, v in params.items()],
    }


def request(instance_id, node_id, uid, inputs, params):
    return {
        'type': 'request_execution',
        'serverUid': 'orchestrator',
        'instanceId': instance_id,
        'payload': {
            'nodeId': node_id,
            'nodeUid': uid,
            'graphNode': graph_node(node_id, uid, params),
            'inputs': inputs,
        },
    }


def show(direction, frame):
    print(f'{direction} {json.dumps(frame, separators=(",", ":"))}', flush=True)


async def recv_json(ws):
    raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    frame = json.loads(raw)
    show('<', frame)
    return frame


async def execute(ws, instance_id, node_id, uid, inputs, params):
    """Sends one request; returns (statuses in order, elapsed seconds)."""
    msg = request(instance_id, node_id, uid, inputs, params)
    show('>', msg)
    start = time.perf_counter()
    await ws.send(json.dumps(msg))
    statuses = []
    while True:
        frame = await recv_json(ws)
        if frame.get('type') != 'node_status' or frame.get('instanceId') != instance_id:
            continue
        status = frame['payload']['status']
        statuses.append(status)
        if status.get('type') in ('complete', 'error'):
            return statuses, time.perf_counter() - start


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, what, ok, detail=''):
        print(f'{"ok  " if ok else "FAIL"} {what}{" -- " + detail if detail and not ok else ""}', flush=True)
        if not ok:
            self.failed += 1


def final(statuses):
    return statuses[-1] if statuses else {}


async def main(host, port):
    c = Checks()

    # GET /
    with urllib.request.urlopen(f'http://{host}:{port}/', timeout=TIMEOUT) as resp:
        body = json.loads(resp.read())
        print(f'GET / -> {resp.status} {resp.headers.get("Content-Type")}')
        print(json.dumps(body, indent=2), flush=True)
    c.check('GET / lists the three nodes',
            {'simple-text', 'complex-math', 'progress-steps'} <= set(body.get('nodeUIDs', [])))

    async with websockets.connect(f'ws://{host}:{port}/', max_size=None, compression=None) as ws:
        handshake = await recv_json(ws)
        c.check('first frame is handshake', handshake.get('type') == 'handshake')
        defs = handshake.get('payload', {}).get('nodeDefinitions', [])
        c.check('handshake has 3+ definitions', len(defs) >= 3, str(len(defs)))

        print('\n--- simple-text', flush=True)
        st, dt = await execute(ws, 'probe-text', 1, 'simple-text', {'text': ['hello']}, {'uppercase': True})
        c.check('simple-text: running first', st[0].get('type') == 'running', json.dumps(st[0]))
        c.check('simple-text: complete {"text": ["HELLO"]}',
                final(st).get('type') == 'complete' and final(st).get('outputs') == {'text': ['HELLO']},
                json.dumps(final(st)))
        print(f'    ({dt * 1000:.2f} ms)')

        print('\n--- complex-math power', flush=True)
        st, dt = await execute(ws, 'probe-math', 2, 'complex-math', {'a': [2], 'b': [10]}, {'operation': 'power'})
        c.check('complex-math: complete {"result": [1024]}',
                final(st).get('type') == 'complete' and final(st).get('outputs') == {'result': [1024]},
                json.dumps(final(st)))

        print('\n--- complex-math divide by zero', flush=True)
        st, dt = await execute(ws, 'probe-math', 3, 'complex-math', {'a': [1], 'b': [0]}, {'operation': 'divide'})
        c.check('complex-math: error "division by zero"',
                final(st).get('type') == 'error' and 'division by zero' in str(final(st).get('message')),
                json.dumps(final(st)))

        print('\n--- progress-steps', flush=True)
        st, dt = await execute(ws, 'probe-progress', 4, 'progress-steps', {}, {'steps': 3, 'delay_ms': 20})
        steps = [s.get('progress', {}).get('step') for s in st if s.get('progress')]
        c.check('progress-steps: steps 1,2,3 then complete {"result": ["done"]}',
                steps == [1, 2, 3] and final(st).get('outputs') == {'result': ['done']},
                json.dumps(st))
        print(f'    ({dt * 1000:.2f} ms)')

        print('\n--- unknown node uid', flush=True)
        st, dt = await execute(ws, 'probe-unknown', 5, 'no-such-node', {}, {})
        c.check('unknown uid: error naming the uid',
                final(st).get('type') == 'error' and 'no-such-node' in str(final(st).get('message')),
                json.dumps(final(st)))

        print('\n--- progress-steps aborted by stop_workflow_instance', flush=True)
        msg = request('probe-stop', 6, 'progress-steps', {}, {'steps': 50, 'delay_ms': 20})
        show('>', msg)
        await ws.send(json.dumps(msg))
        await asyncio.sleep(0.1)
        stop = {'type': 'stop_workflow_instance', 'serverUid': 'orchestrator', 'instanceId': 'probe-stop'}
        show('>', stop)
        await ws.send(json.dumps(stop))
        acked = completed = False
        deadline = time.monotonic() + 1.5  # wait a while for any late frames
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            frame = json.loads(frame)
            show('<', frame)
            if frame.get('type') == 'ack_stop_workflow':
                acked = True
            if frame.get('type') == 'node_status' and frame['payload']['status'].get('type') == 'complete':
                completed = True
        c.check('stop: ack_stop_workflow received', acked)
        c.check('stop: no complete for the aborted execution', not completed)

    print(f'\n{"all checks passed" if not c.failed else f"{c.failed} check(s) FAILED"}')
    return 1 if c.failed else 0


if __name__ == '__main__':
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[2] if len(sys.argv) > 2 else '127.0.0.1', int(sys.argv[1]))))
