"""Framework integrations users install: the Airflow provider and the Prefect block.

``providers.airflow`` registers with Airflow through the ``apache_airflow_provider`` entry
point (hook, operators, ``@task.wisefuse_lambda``); ``providers.prefect`` holds the Prefect
block and flow decorator. Only these subpackages import their framework, and only when
they are imported themselves: ``import wisefuse_plugins`` needs neither framework.
"""
