"""The Airflow provider: hook, operators and the ``@task.wisefuse_lambda`` decorator.

Airflow finds it through the ``apache_airflow_provider`` entry point, which names
:func:`get_provider_info`; that function imports nothing of Airflow, so listing providers
stays cheap. The hook, operators and decorator live in :mod:`.hooks`, :mod:`.operators`
and :mod:`.decorators` (importing those imports Airflow).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

DISTRIBUTION = "wisefuse-plugins"


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    """Airflow's provider metadata (``package-name`` must equal the distribution's name)."""
    return {
        "package-name": DISTRIBUTION,
        "name": "WiseFuse",
        "description": (
            "Run Airflow tasks as planned AWS Lambda units (fusion, bundling, right-sized "
            "memory), on AWS or on an embedded local Lambda."
        ),
        "versions": [_version()],
        "task-decorators": [
            {
                "name": "wisefuse_lambda",
                "class-name": "wisefuse_plugins.providers.airflow.decorators.wisefuse_lambda_task",
            }
        ],
    }
