"""Optuna sweeps over the ``train.*`` keys in ``sweep.space``, tracked as one MLflow parent run with a child per trial.

- :mod:`vaelab.sweep.coordinator`: runs the study (``run_sweep``), the worker loop (``run_worker``) and the
  ``vaelab sweep`` command (``main``, also ``python -m vaelab.sweep``); its docstring tells how storages,
  workers and the trial budget work.
- :mod:`vaelab.sweep.objective`: one trial (``Objective``): sample the space, train, score by the validation NLL
  (and, with several ``sweep.objectives``, by the others :mod:`vaelab.sweep.scores` measures).
- :mod:`vaelab.sweep.storage`: where the study lives: the storage spec, opening storages and studies, abandoned
  trials.
- :mod:`vaelab.sweep.report`: what a sweep leaves in ``sweeps/<study>/`` and on its MLflow parent run.
- :mod:`vaelab.sweep.choice`: which trial is the study's winner (``chosen_trial``), from the Pareto front by the
  params' rule when there are several objectives; :mod:`vaelab.sweep.pareto` draws and tabulates that front.
- :mod:`vaelab.sweep.dashboard`: optuna-dashboard on the storage, with the trials' pictures (``vaelab dashboard``).

Import names from the module that defines them; this package re-exports nothing.
"""
