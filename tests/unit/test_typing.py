"""``mypy --strict`` is clean on the package.

The configuration (strict, Python 3.9, the modules not yet annotated) is
in pyproject.toml; ``tox -e typecheck`` runs the same check.  mypy comes
with the ``test`` extra: when it is missing this test fails, it does not
skip, so that ``py.typed`` never ships unchecked.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_mypy_strict_is_clean():
    if importlib.util.find_spec('mypy') is None:
        pytest.fail("mypy is not installed (pip install '.[test]')")
    done = subprocess.run(
        [sys.executable, '-m', 'mypy', '--config-file',
         str(REPO / 'pyproject.toml'), 'amqp'],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=600, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert 'Success: no issues found' in done.stdout, report
    # a configuration problem (an unknown option, a python_version this
    # mypy cannot check for) is only a warning on stderr
    assert 'pyproject.toml' not in done.stderr, report
