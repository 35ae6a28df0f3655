"""Emitters: turn a (workflow, plan) into something an orchestrator runs.

Each emitter targets one orchestrator (Airflow DAG source, Prefect flow, Step Functions
ASL) and imports nothing of that orchestrator at module level, so ``import
wisefuse_plugins`` stays light.
"""
