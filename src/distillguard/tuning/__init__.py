"""``distillguard tune``: find the defense configuration with the best privacy–utility trade-off.

- :mod:`~distillguard.tuning.space`: candidates as spec overrides, the default space.
- :mod:`~distillguard.tuning.workspace`: the tuner's copy of the data, without the test split.
- :mod:`~distillguard.tuning.search`: budgeted successive halving over full pipeline runs.
- :mod:`~distillguard.tuning.pareto`: Pareto front and constrained choice (pure).
- :mod:`~distillguard.tuning.report`: the plot and the HTML page.
"""

from distillguard.tuning.search import TuneResult, tune
from distillguard.tuning.space import Candidate, default_space

__all__ = ["Candidate", "TuneResult", "default_space", "tune"]
