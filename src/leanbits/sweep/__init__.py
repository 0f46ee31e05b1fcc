"""Sweeps: experiment grids run as cached, resumable stages on local processes or Ray.

* :mod:`.experiment` - experiment files (TOML): reading, ``--quick`` and ``--set``,
* :mod:`.grid` - an experiment's expansion into points and their stage chains,
* :mod:`.kinds` - each stage kind's config class and directory label (no torch),
* :mod:`.stages` - what one stage does and how its output becomes durable,
* :mod:`.executors` - local (process pool) and Ray executors,
* :mod:`.run` - running the DAG and the results files (schema in its docstring),
* :mod:`.presets` - the studies shipped with leanbits,
* :mod:`.frontier` - accuracy-vs-bits Pareto frontiers (pure functions),
* :mod:`leanbits.cli.sweep` - ``leanbits run`` and ``leanbits study``.

Example:
    >>> from leanbits.sweep import load_experiment, run_experiment
    >>> exp = load_experiment("experiments/heads-mnist.toml", quick=True)  # doctest: +SKIP
    >>> summary = run_experiment(exp, "runs/heads-mnist-quick", "local", jobs=2)  # doctest: +SKIP
"""

import importlib
from typing import TYPE_CHECKING, Any

# The names below load on first use (PEP 562), not here: running a sweep imports torch,
# and ``leanbits run --help`` or a study's name must not wait for it (``presets`` and
# ``executors`` are light).
_LAZY = {  # name -> module that defines it
    "Experiment": "leanbits.sweep.experiment",
    "load_experiment": "leanbits.sweep.experiment",
    "RunSummary": "leanbits.sweep.run",
    "StageFailed": "leanbits.sweep.run",
    "load_results": "leanbits.sweep.run",
    "run_experiment": "leanbits.sweep.run",
    "study_names": "leanbits.sweep.presets",
    "study_path": "leanbits.sweep.presets",
}

if TYPE_CHECKING:
    from leanbits.sweep.experiment import Experiment, load_experiment
    from leanbits.sweep.presets import study_names, study_path
    from leanbits.sweep.run import RunSummary, StageFailed, load_results, run_experiment


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'leanbits.sweep' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["Experiment", "RunSummary", "StageFailed", "load_experiment", "load_results",
           "run_experiment", "study_names", "study_path"]
