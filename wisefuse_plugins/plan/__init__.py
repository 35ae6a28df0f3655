"""The plan layer, right above the IR: what runs where on Lambda.

- :mod:`.schema`: the plan (units of fused stages, bundle size, memory, architecture),
  its checks and its JSON form;
- :mod:`.limits` and :mod:`.pricing`: Lambda's platform facts (memory, CPU share,
  timeouts, architectures, prices) that the optimizer, the model and the runtime share;
- :mod:`.lower`: the one lowering of (workflow, plan, instance counts) to invocations
  (which stages, which instances in which chunk, what each reads and writes, how
  instances are counted) that every orchestrator of a plan reads.

It imports only :mod:`wisefuse_plugins.ir`; everything that plans, runs or emits a plan
imports it.
"""

from wisefuse_plugins.plan.schema import Plan, Unit, check_plan, dump_plan, load_plan

__all__ = ["Plan", "Unit", "check_plan", "dump_plan", "load_plan"]
