"""Adapters: read a framework's workflow (Airflow DAG, Prefect flow) into the IR.

They are the only modules that import a workflow framework, and they do it lazily, inside
functions, so ``import wisefuse_plugins`` works with neither installed. Whatever they
cannot represent faithfully becomes an opaque stage with a reason, never an error.
"""
