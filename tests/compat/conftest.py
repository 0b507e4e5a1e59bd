"""Fixtures for running kombu and celery on this package.

Every test here must import *our* ``amqp``: the dev virtualenv may also have
py-amqp installed, so run pytest with ``PYTHONPATH=<checkout>`` (or install
the package); ``_our_amqp`` fails the test otherwise.

Scenario programs (``compat_scenarios.py``) are run in subprocesses, once on
this package and once on py-amqp 5.4.2 from a reference virtualenv that is
built on first use and cached under the system temp directory.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ours import OURS, ours_env, reference_env
from testkit import unique_name

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


REFERENCE_PINS = ('amqp==5.4.2', 'kombu==5.7.0', 'celery==5.7.0')
REFERENCE_VENV = Path(tempfile.gettempdir()) / (
    'amqp-compat-reference-' + '-'.join(
        p.replace('==', '') for p in REFERENCE_PINS) +
    f'-py{sys.version_info[0]}{sys.version_info[1]}')


@pytest.fixture(autouse=True)
def _our_amqp():
    # py-amqp has no amqp.cli: missing here means a virtualenv where
    # py-amqp shadows this package.
    assert (OURS / 'cli' / 'localbroker.py').exists(), (
        f'tests import py-amqp from {OURS}, not this package: install it '
        f'or run with PYTHONPATH={ROOT}')


@pytest.fixture
def prefix():
    """A unique name prefix so tests never share queues or exchanges."""
    return unique_name('compat')


@pytest.fixture(scope='session')
def pyamqp_url(broker):
    return broker.url.replace('amqp://', 'pyamqp://', 1)


def _probe(python, env):
    out = subprocess.run(
        [str(python), '-c',
         'import amqp, kombu, celery; '
         'print(amqp.__version__, amqp.__file__)'],
        env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True,
        timeout=60)
    return out.stdout.split() if out.returncode == 0 else None


@pytest.fixture(scope='session')
def reference_python():
    """An interpreter whose ``import amqp`` is py-amqp 5.4.2.

    Built once with pip (about 6 s with a warm pip cache) and reused by
    later sessions.  Skips only when the virtualenv cannot be built (no
    package index reachable), and says so.
    """
    python = REFERENCE_VENV / 'bin' / 'python'
    env = reference_env()
    found = _probe(python, env) if python.exists() else None
    if not found or found[0] != '5.4.2':
        started = time.monotonic()
        build = subprocess.run(
            [sys.executable, '-m', 'venv', '--clear', str(REFERENCE_VENV)],
            capture_output=True, text=True)
        if build.returncode == 0:
            build = subprocess.run(
                [str(python), '-m', 'pip', 'install', '-q',
                 '--disable-pip-version-check', *REFERENCE_PINS],
                capture_output=True, text=True, timeout=600)
        if build.returncode != 0:
            pytest.skip('cannot build the py-amqp reference virtualenv '
                        f'({" ".join(REFERENCE_PINS)}): '
                        + build.stderr[-2000:])
        found = _probe(python, env)
        sys.stderr.write(f'\nbuilt {REFERENCE_VENV} in '
                         f'{time.monotonic() - started:.1f}s\n')
    assert found and found[0] == '5.4.2', found
    assert not Path(found[1]).resolve().is_relative_to(ROOT), found
    return python


@pytest.fixture(scope='session')
def run_scenario():
    """The :func:`_run_scenario` helper, for tests."""
    return _run_scenario


def _run_scenario(name, url, *, python=None, ours=True, timeout=120):
    """Run one scenario of compat_scenarios.py; return its decoded output."""
    python = python or sys.executable
    proc = subprocess.run(
        [str(python), str(HERE / 'compat_scenarios.py'), name, url,
         unique_name('compat')],
        env=ours_env() if ours else reference_env(),
        cwd=tempfile.gettempdir(), capture_output=True, text=True,
        timeout=timeout)
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith('RESULT:')]
    assert proc.returncode == 0 and lines, (
        f'{name} failed (rc={proc.returncode}):\n'
        f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return json.loads(lines[-1][len('RESULT:'):])


@pytest.fixture(scope='session')
def subprocess_env():
    """Environment for a worker or scenario that must import our amqp."""
    return ours_env()
