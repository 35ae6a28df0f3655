"""``python -m wisefuse_plugins.runtime.backends.service --port N``."""

from wisefuse_plugins.runtime.backends.service.server import main

main()
