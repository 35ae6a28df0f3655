"""The intermediate representation: one graph for every framework.

Adapters build a :class:`Workflow`; the optimizer reads it; emitters and the runtime
execute it. See ``docs/ir-format.md`` for the JSON format.
"""

from wisefuse_plugins.ir.callables import callable_ref, code_hash
from wisefuse_plugins.ir.errors import IRError
from wisefuse_plugins.ir.names import is_safe_name, safe_name
from wisefuse_plugins.ir.nodes import (
    Binding,
    CallableRef,
    Collect,
    Const,
    ConstItem,
    Edge,
    EdgeKind,
    EdgePattern,
    Item,
    Output,
    Source,
    Stage,
    StageKind,
    derive_edges,
    edge_pattern,
    upstream_of,
)
from wisefuse_plugins.ir.serde import IR_VERSION, dump, from_json, load, to_json
from wisefuse_plugins.ir.validate import problems
from wisefuse_plugins.ir.workflow import Workflow

__all__ = [
    "IR_VERSION",
    "Binding",
    "CallableRef",
    "Collect",
    "Const",
    "ConstItem",
    "Edge",
    "EdgeKind",
    "EdgePattern",
    "IRError",
    "Item",
    "Output",
    "Source",
    "Stage",
    "StageKind",
    "Workflow",
    "callable_ref",
    "code_hash",
    "derive_edges",
    "dump",
    "edge_pattern",
    "from_json",
    "is_safe_name",
    "load",
    "problems",
    "safe_name",
    "to_json",
    "upstream_of",
]
