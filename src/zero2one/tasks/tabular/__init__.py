"""Tabular classification and regression with scikit-learn (the tabular extra).

The tasks are declared in zero2one's entry points (``zero2one.tasks``); importing this package
imports nothing heavy.
"""
