"""Predicting distillation success from the random-subset indicator, fitted on a study table.

Imports nothing from :mod:`medistill.study`: the CLI (:mod:`medistill.cli.predict`), above both, joins
the study's table and tasks with the predictor's fits.
"""
from .fit import (DEFAULT_METRIC, METRICS, Loso, MethodFit, Point, fit_method, fit_table, leave_one_source_out,
                  points_from_rows)
from .predict import Prediction, Recommendation, predict_all, predict_method, recommend
from .stats import (LEVEL, Coverage, GroupedCorrelation, GroupedLine, clip, clip_interval, coverage, fit_grouped,
                    grouped_correlation, variance_components)

__all__ = ["DEFAULT_METRIC", "LEVEL", "METRICS", "Coverage", "GroupedCorrelation", "GroupedLine", "Loso", "MethodFit",
           "Point", "Prediction", "Recommendation", "clip", "clip_interval", "coverage", "fit_grouped", "fit_method",
           "fit_table", "grouped_correlation", "leave_one_source_out", "points_from_rows", "predict_all",
           "predict_method", "recommend", "variance_components"]
