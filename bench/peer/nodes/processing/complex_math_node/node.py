"""`complex-math`: applies an arithmetic operation to `a` and `b`.

Python twin of nodes/processing/complex_math_node (Rust): same definition,
same outputs ({"result": [42]}, whole results as integers), same error
messages ("division by zero", "unknown operation 'modulo'", ...).
"""

import math

from nanograph_sdk import NanoSDK

from compat import NodeError, as_f64, as_str, input_value, number, param_value, rust_f64

definition = {
    'uid': 'complex-math',
    'name': 'Complex Math',
    'category': 'Processing',
    'version': '1.0.0',
    'description': 'Applies an arithmetic operation to two numbers',
    'inputs': [
        {'name': 'a', 'type': 'number', 'description': 'First operand'},
        {'name': 'b', 'type': 'number', 'description': 'Second operand'},
    ],
    'outputs': [
        {'name': 'result', 'type': 'number', 'description': 'Result of the operation'},
    ],
    'parameters': [
        {
            'name': 'operation',
            'type': 'select',
            'value': 'add',
            'default': 'add',
            'label': 'Operation',
            'options': [
                {'value': 'add', 'label': 'Add'},
                {'value': 'subtract', 'label': 'Subtract'},
                {'value': 'multiply', 'label': 'Multiply'},
                {'value': 'divide', 'label': 'Divide'},
                {'value': 'power', 'label': 'Power'},
            ],
        },
    ],
}

node = NanoSDK.register_node(definition)


def _power(a: float, b: float) -> float:
    # Rust's powf gives inf / NaN where Python raises.
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


async def execute(ctx):
    a = input_value(ctx, 'a', as_f64)
    b = input_value(ctx, 'b', as_f64)
    operation = param_value(ctx, definition, 'operation', as_str)
    if operation == 'add':
        result = a + b
    elif operation == 'subtract':
        result = a - b
    elif operation == 'multiply':
        result = a * b
    elif operation == 'divide':
        if b == 0.0:
            raise NodeError('division by zero')
        result = a / b
    elif operation == 'power':
        result = _power(a, b)
    else:
        raise NodeError(f"unknown operation '{operation}'")
    if not math.isfinite(result):
        raise NodeError(f'{operation} of {rust_f64(a)} and {rust_f64(b)} is not a finite number')
    return {'result': [number(result)]}


node['execute'] = execute
export = node
