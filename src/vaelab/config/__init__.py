"""The one reader of params.yaml, one module per job. Import from the module itself; this file re-exports nothing.

- :mod:`.schema`: the frozen pydantic models, one per section, and :class:`~.schema.Config`; their defaults are
  the only ones (tests/test_config.py checks that params.yaml writes the same values).
- :mod:`.rules`: what a name or a path may be, as text.
- :mod:`.params_file`: a params file or preset read as YAML, a key written twice refused.
- :mod:`.disk`: the paths checked against what exists on disk.
- :mod:`.memory`: the sizes checked against this machine's RAM (counted by :mod:`vaelab.sizes`).
- :mod:`.messages`: the one-line wording of every config error.
- :mod:`.presets`: ``presets/*.yaml``, each as dotted overrides checked against the params file.
- :mod:`.load`: :func:`~.load.load_config` and :func:`~.load.with_overrides`, the two doors.
"""
