"""``sqlcoder-eval``: sql-eval's accuracy table for the in-database text-to-SQL path.

Load defog-data style databases (:mod:`.load`), ask every question through
``sqlcoder.ask`` or another predictor (:mod:`.predictors`, :mod:`.runner`),
judge the answers as sql-eval does (:mod:`.judges`: :mod:`.sqleval_judge` gives
sql-eval's verdicts, quirks included; :mod:`.compare` is the stricter judge),
and report the model card's per-category table (:mod:`.report`). :mod:`.check`
proves the pipeline on the data itself: gold answers score 100%, deliberately
broken ones (:mod:`.perturb`) 0%.
"""

from .compare import ResultSet, Verdict, compare_results
from .dataset import Dataset, Question
from .goldsql import expand_gold

__version__ = "0.4.0"

__all__ = ["__version__", "Dataset", "Question", "ResultSet", "Verdict", "compare_results", "expand_gold"]
