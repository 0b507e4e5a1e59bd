"""Which ``amqp`` the compat tests run on.

The package under test is this checkout when ``PYTHONPATH`` points at it,
or the copy installed from it (README's test command tests the installed
package); either way it is the ``amqp`` this interpreter imports.
"""
from pathlib import Path

import amqp

OURS = Path(amqp.__file__).resolve().parent


def is_ours(amqp_file):
    """True if ``amqp_file`` belongs to the package under test."""
    return Path(amqp_file).resolve().parent == OURS
