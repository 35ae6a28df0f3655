"""Performance and cost model: latency, composition, cost (Lambda's limits and prices are in
:mod:`wisefuse_plugins.plan`)."""
