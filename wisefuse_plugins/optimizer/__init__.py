"""Choosing the execution plan: which stages fuse, how instances bundle, how much memory.

The plan itself lives in :mod:`wisefuse_plugins.plan`."""
