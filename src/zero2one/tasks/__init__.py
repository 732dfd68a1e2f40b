"""Task packages; each registers itself with :func:`zero2one.catalog.register_task`."""
