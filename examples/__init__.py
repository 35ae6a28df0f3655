"""Example workloads for wisefuse-plugins: the user's task code the example DAGs and flows share."""
