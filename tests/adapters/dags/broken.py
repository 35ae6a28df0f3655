"""A DAG file that does not import."""

from airflow.sdk import dag  # noqa: F401

raise RuntimeError("the config server is down")
