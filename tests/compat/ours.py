"""Which ``amqp`` the compat tests run on.

The package under test is this checkout when ``PYTHONPATH`` points at it,
or the copy installed from it (README's test command tests the installed
package); either way it is the ``amqp`` this interpreter imports.
"""
import os
from pathlib import Path

import amqp

OURS = Path(amqp.__file__).resolve().parent
HERE = Path(__file__).resolve().parent


def is_ours(amqp_file):
    """True if ``amqp_file`` belongs to the package under test."""
    return Path(amqp_file).resolve().parent == OURS


def ours_env():
    """Environment for a subprocess that must import this package."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(OURS.parent), str(HERE)])
    return env


def reference_env():
    """Environment for a subprocess that must import py-amqp."""
    env = dict(os.environ)
    env['PYTHONPATH'] = str(HERE)
    env.pop('PYTHONHOME', None)
    return env
