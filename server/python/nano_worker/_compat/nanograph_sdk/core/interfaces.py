"""The node-author types of nanograph-sdk 0.2.3 (annotations only)."""

import asyncio
from typing import Any, Callable, Coroutine, Dict, List, Literal, Optional, TypedDict, Union

PortType = str
NodeType = Literal["client", "server"]
ParameterType = Literal["number", "text", "slider", "boolean", "select", "color", "filepicker"]
NodeStatusType = Literal["idle", "running", "complete", "error", "missing"]
NodeInputs = Dict[str, List[Any]]
NodeOutputs = Dict[str, List[Any]]


class Port(TypedDict, total=False):
    uid: str
    name: str
    type: str
    optional: bool
    preventCrossDomain: bool
    sizeHint: Literal["small", "medium", "large", "xlarge"]
    description: str


class ParameterOption(TypedDict):
    value: str
    label: str


class Parameter(TypedDict, total=False):
    uid: str
    name: str
    type: str
    value: Any
    default: Any
    label: Optional[str]
    description: Optional[str]
    min: Optional[Union[int, float]]
    max: Optional[Union[int, float]]
    step: Optional[Union[int, float]]
    precision: Optional[int]
    range: Optional[List[Union[int, float]]]
    options: Optional[List[ParameterOption]]
    multiline: Optional[bool]


class NodeStatus(TypedDict, total=False):
    type: NodeStatusType
    message: Optional[str]
    progress: Optional[Dict[str, int]]
    outputs: Optional[Dict[str, Any]]


class NodeDefinition(TypedDict, total=False):
    uid: str
    name: str
    category: str
    version: str
    description: Optional[str]
    type: NodeType
    inputs: List[Port]
    outputs: List[Port]
    parameters: List[Parameter]


class GraphNode(TypedDict, total=False):
    id: int
    uid: str
    name: str
    parameters: List[Parameter]
    serverUid: str


class NodeContext(TypedDict, total=False):
    inputs: NodeInputs
    outputs: NodeOutputs
    status: NodeStatus


class NodeResponse(TypedDict, total=False):
    outputs: NodeOutputs
    status: NodeStatus


class NodeDefinitionsMessage(TypedDict, total=False):
    type: str
    definitions: List[NodeDefinition]


class NanoSDKConfig(TypedDict, total=False):
    domain: str
    server_display_name: str
    server_uid: str
    server_package_id: str
    language: Literal["python", "javascript"]
    port: Optional[int]
    nodes_path: Optional[str]
    auto_watch: Optional[bool]
    watch_debounce_time: Optional[int]


ExecuteFunction = Callable[[NodeContext], Union[NodeResponse, Coroutine[Any, Any, NodeResponse]]]


class NodeInstance(TypedDict):
    definition: NodeDefinition
    execute: ExecuteFunction


class ExecutionContextData(TypedDict):
    send_status: Callable[[NodeStatus], "asyncio.Future"]
    is_aborted: Callable[[], bool]
    graph_node: GraphNode
    instance_id: str


class ExecutionContext(TypedDict):
    inputs: NodeInputs
    parameters: List[Parameter]
    context: ExecutionContextData
