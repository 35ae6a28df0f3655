"""Performance and cost model: latency, composition, cost (Lambda's limits and prices are in
:mod:`wisefuse_plugins.plan`).

:class:`~wisefuse_plugins.model.predict.Model` is the entry point; its parts are plain
functions by idea: :mod:`.samples` (measured samples -> stage profiles), :mod:`.profile`
(what a model is built from), :mod:`.scaling` (memory-scaling laws), :mod:`.skew`,
:mod:`.parallel`, :mod:`.compose` (composition over draws), :mod:`.state` (a model's
inputs and caches), :mod:`.stage` (one stage's time), :mod:`.traffic` (store I/O),
:mod:`.shape` (a unit's order, bundling, threads), :mod:`.invocation` (one invocation's
draws), :mod:`.cost`, :mod:`.correction` (applying measured factors; :mod:`.correct`
measures them) and :mod:`.predict` (the unit graph walked end to end).
"""
