"""WiseFuse for Prefect: the ``WiseFuseLambda`` Block and the ``@wisefuse`` flow decorator.

This module is the ``prefect.collections`` entry point, so Prefect imports it when it looks
up block types (``Block.load("wisefuse-lambda/NAME")``) and
``prefect block register -m wisefuse_plugins.providers.prefect`` registers the block.
Users import from :mod:`wisefuse_plugins.prefect`.
"""

from wisefuse_plugins.providers.prefect.blocks import WiseFuseLambda
from wisefuse_plugins.providers.prefect.decorator import PlanCheck, WiseFuseFlow, wisefuse

__all__ = ["PlanCheck", "WiseFuseFlow", "WiseFuseLambda", "wisefuse"]
