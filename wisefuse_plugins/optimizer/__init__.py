"""Choosing the execution plan: which stages fuse, how instances bundle, how much memory."""

from wisefuse_plugins.optimizer.plan import Plan, Unit, check_plan, dump_plan, load_plan

__all__ = ["Plan", "Unit", "check_plan", "dump_plan", "load_plan"]
