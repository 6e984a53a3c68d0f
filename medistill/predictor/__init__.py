"""Predicting distillation success from the random-subset indicator, fitted on a study table."""
from .fit import (Correlation, LinearFit, Lodo, MethodFit, Pair, correlation, fit_line, fit_method, fit_table,
                  leave_one_dataset_out, pairs_from_table)
from .predict import Prediction, predict_all, table_methods

__all__ = ["Correlation", "LinearFit", "Lodo", "MethodFit", "Pair", "Prediction", "correlation", "fit_line",
           "fit_method", "fit_table", "leave_one_dataset_out", "pairs_from_table", "predict_all", "table_methods"]
