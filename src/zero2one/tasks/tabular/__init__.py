"""Tabular classification and regression with scikit-learn."""

from zero2one.registry import register_task
from zero2one.tasks.tabular.task import TabularClassification, TabularRegression

register_task(TabularClassification)
register_task(TabularRegression)

__all__ = ["TabularClassification", "TabularRegression"]
