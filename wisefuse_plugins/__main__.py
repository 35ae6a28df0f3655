"""``python -m wisefuse_plugins`` is the ``wisefuse`` command."""

from wisefuse_plugins.cli import main

main()
