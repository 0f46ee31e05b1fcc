"""Sweeps: experiment grids run as cached, resumable stages on local processes or Ray.

* :mod:`.experiment` - experiment files (TOML): reading, ``--quick`` and ``--set``,
* :mod:`.grid` - an experiment's expansion into points and their stage chains,
* :mod:`.stages` - what one stage does and how its output becomes durable,
* :mod:`.executors` - local (process pool) and Ray executors,
* :mod:`.run` - running the DAG and the results files (schema in its docstring),
* :mod:`.frontier` - accuracy-vs-bits Pareto frontiers (pure functions),
* :mod:`.cli` - ``leanbits run`` and ``leanbits study``.

Example:
    >>> from leanbits.sweep import load_experiment, run_experiment
    >>> exp = load_experiment("experiments/heads-mnist.toml", quick=True)  # doctest: +SKIP
    >>> summary = run_experiment(exp, "runs/heads-mnist-quick", "local", jobs=2)  # doctest: +SKIP
"""

from leanbits.sweep.experiment import Experiment, load_experiment, study_names, study_path
from leanbits.sweep.run import RunSummary, StageFailed, load_results, run_experiment

__all__ = ["Experiment", "RunSummary", "StageFailed", "load_experiment", "load_results",
           "run_experiment", "study_names", "study_path"]
