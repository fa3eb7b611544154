"""Code for the tests, the docs and the benchmarks only: not part of the installed tool.

Run from the repository root, as modules (`python -m tools.flag_reference`, `python -m tools.screenshot`); the
tests import it the same way (pyproject.toml puts the root on pytest's module path).
"""
