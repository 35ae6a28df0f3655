"""Prefect flows -> IR: trace one real run, or rebuild a past run from the API.

Why tracing, and how
--------------------
A Prefect flow is ordinary Python: its graph exists only while it runs (loops, ``if``\\ s,
``.map()`` over lists whose length is data). So :func:`trace_flow` runs the flow once, for
real, and watches it from two sides:

* **In-process**, ``Task.__call__`` / ``Task.submit`` / ``Task.map`` and ``Flow.__call__``
  are wrapped for the duration of the traced run (class attributes, restored afterwards;
  calls outside the traced run pass straight through). A wrapper sees each call exactly as
  the flow wrote it, *before* Prefect resolves anything: which arguments are futures
  (``future.task_run_id`` names the producer run, no guessing), ``unmapped()`` / ``quote()``
  wrappers, literal values (snapshotted as JSON at call time), which parameters a ``.map()``
  iterates over, ``wait_for``. Plain ``task(...)`` calls return values, not futures; the
  wrapper records each returned object (and the entries of a returned dict or list) with
  the run that produced it, holding a reference so an ``id()`` is never recycled.
* **The Prefect API** (the run's task runs, read with the client) supplies what the
  process does not see reliably: run names, task keys, states and start/end times
  (``Stage.meta["observed_ms"]``).

Prefect's own ``task_inputs`` are *not* used for edges in a trace: Prefect links any object
found anywhere inside an argument to a task result of the same ``id()``, so interned
values (short strings, code constants) returned by one task and merely equal to something
inside another argument create spurious inputs (see docs/prefect-adapter.md). The trace
only links (1) futures and states, by run id; (2) a whole argument (or each element of a
list argument, for gathers) that the call site proves to be an output: a nested call, a
variable assigned from one, ``.result()``, ``x["key"]`` -- the object passed is the one
that site last returned (:mod:`.tracer`); (3) a non-atom that *is* a recorded result. An
atom (None, bool, number, string, bytes, a tuple of atoms) can be the very same object as
an unrelated literal, so it is linked only by (1) and (2). Inputs Prefect recorded that the
trace dropped are listed in ``Stage.meta["ignored_api_inputs"]``.

A planned run does not run the flow body, so a ``Const`` is replayed as traced: only values
the flow's source proves constant (literals, flow parameters, constants computed from them:
:mod:`.dataflow`) are ``Const``. Any other value -- computed in the flow from a task result
or from anything else -- leaves its stage opaque with the reason, as does a call made under
a data-dependent condition and a task that needs Prefect itself (:mod:`.context`): a
planned run never returns what the plain flow would not.

What maps to what
-----------------
One stage per call: a ``.map()`` call is one mapped stage with ``parallelism`` = its runs
(``observed``); a task called several times without ``.map()`` (say in a loop) gives one
stage per call, ids ``name``, ``name-2``, ... Subflows are *not* flattened: a subflow call
is one opaque stage (its own tasks stay in Prefect; trace the subflow on its own to
optimise it). The IR is specialised to the traced run: flow parameters and any value the
flow computes from them alone become ``Const`` bindings (the parameters are in
``Workflow.meta``). A flow
with ``retries`` keeps the calls of its last attempt. Only sync flows are traced.
:func:`from_history` rebuilds a past run from the API alone, which is less precise (see
its docstring).

Where each idea lives
---------------------
* :mod:`.load` -- importing the flow file, finding the ``@flow`` object;
* :mod:`.snapshot` -- JSON copies of argument values, and which values are atoms;
* :mod:`.callsite` -- how a call site wrote its arguments (the flow's AST);
* :mod:`.dataflow` -- which expressions are constants, where a variable was assigned from;
* :mod:`.context` -- what a task needs from Prefect that a Lambda unit cannot give;
* :mod:`.tracer` -- the record of each call and where its arguments came from;
* :mod:`.patch` -- wrapping Prefect's call entry points during the traced run;
* :mod:`.runs` -- reading task runs from the Prefect API;
* :mod:`.refs` -- the workflow's source and the stages' callable references;
* :mod:`.trace` -- :func:`trace_flow`: recorded calls -> IR;
* :mod:`.history` -- :func:`from_history`: past runs on the API -> IR.

Prefect itself is imported only inside functions, so importing this package does not.
"""

from __future__ import annotations

from wisefuse_plugins.adapters.prefect.errors import PrefectAdapterError
from wisefuse_plugins.adapters.prefect.history import from_history
from wisefuse_plugins.adapters.prefect.load import load_flow_file
from wisefuse_plugins.adapters.prefect.runs import task_name
from wisefuse_plugins.adapters.prefect.trace import trace_flow

__all__ = ["PrefectAdapterError", "from_history", "load_flow_file", "task_name", "trace_flow"]
