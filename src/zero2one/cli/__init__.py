"""The ``zero2one`` command line (Typer); ``main.py`` composes one module per command group."""
