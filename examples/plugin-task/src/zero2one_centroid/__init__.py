"""A zero2one task package from outside zero2one (see the package's README)."""
