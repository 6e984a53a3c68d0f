"""The study: a grid of distillations and baselines over tasks, IPCs and seeds, into one results table.

Tasks (:mod:`.tasks`) derive many datasets of different difficulty from a few sources; the ``study``
preset (:mod:`.cells`) is the predictor's evidence grid, costed in advance by :mod:`.cost`. The study
never imports :mod:`medistill.predictor` (the CLI, above both, joins them for ``predict`` and ``report``).
"""
from .cells import (BASELINES, DISTILL_METHODS, PRESET_BUDGETS, STUDY_IPCS, STUDY_METHODS, STUDY_SEEDS, STUDY_TASKS,
                    Budget, Cell, grid, shard)
from .claims import ClaimBoard
from .runner import StudyOutcome, run_study
from .table import COLUMNS, METRICS, ResultsTable, read_table
from .tasks import TaskLoader, load_task, parse_task, task_name, task_source

__all__ = ["BASELINES", "COLUMNS", "DISTILL_METHODS", "METRICS", "PRESET_BUDGETS", "STUDY_IPCS", "STUDY_METHODS",
           "STUDY_SEEDS", "STUDY_TASKS", "Budget", "Cell", "ClaimBoard", "ResultsTable", "StudyOutcome", "TaskLoader",
           "grid", "load_task", "parse_task", "read_table", "run_study", "shard", "task_name", "task_source"]
