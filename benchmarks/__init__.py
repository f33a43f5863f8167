"""The benchmark scripts, as one package: they import each other (``from benchmarks import
baseline``) and the tests import them the same way.

Run one from the repository root as ``python3 benchmarks/train.py ...`` or
``python3 -m benchmarks.train ...`` (see docs/benchmarks.md for what each measures).
"""
