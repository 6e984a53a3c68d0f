"""The study: a grid of distillations and baselines over datasets, IPCs and seeds, into one results table."""
from .cells import BASELINES, DISTILL_METHODS, PRESET_BUDGETS, Budget, Cell, grid, shard
from .claims import ClaimBoard
from .runner import StudyOutcome, run_study
from .table import COLUMNS, METRICS, ResultsTable, read_table

__all__ = ["BASELINES", "COLUMNS", "DISTILL_METHODS", "METRICS", "PRESET_BUDGETS", "Budget", "Cell", "ClaimBoard",
           "ResultsTable", "StudyOutcome", "grid", "read_table", "run_study", "shard"]
