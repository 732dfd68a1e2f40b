"""Task packages; each registers itself with :func:`zero2one.registry.register_task`."""
