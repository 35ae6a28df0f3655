"""The optimizer's rewrite rules, each a plain function ``(space, plan) -> plan``.

Applied in order, like an optimizer's rule list, and repeated until the plan stops
changing: :func:`fuse` merges units along edges where that pays, :func:`choose_bundles`
picks each mapped unit's bundle size (with its memory), :func:`right_size` sets memory
per unit: cheapest first, then more memory where it buys the most P95 per dollar until
the SLO holds, then back down wherever the SLO allows. Each pass's docstring states the
one rule for when it changes a plan; none imports another: what they share (right-sizing
a plan under search) is :mod:`wisefuse_plugins.optimizer.sizing`. A pass reads the SLO
and caches from ``space`` and changes neither.
"""

from wisefuse_plugins.optimizer.passes.bundling import choose_bundles
from wisefuse_plugins.optimizer.passes.fusion import fuse
from wisefuse_plugins.optimizer.passes.memory import right_size

PASSES = (fuse, choose_bundles, right_size)

__all__ = ["PASSES", "choose_bundles", "fuse", "right_size"]
