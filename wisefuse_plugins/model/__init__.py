"""Performance and cost model: Lambda pricing and limits, latency, composition."""
