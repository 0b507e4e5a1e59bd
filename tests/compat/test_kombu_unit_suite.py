"""kombu's own unit tests for its py-amqp transport, connection, messaging
and pools (``t/unit/transport/test_pyamqp.py``, ``t/unit/test_connection.py``,
``t/unit/test_messaging.py``, ``t/unit/test_pools.py`` from the sdist of the
installed kombu), run unchanged on this package.

They drive ``amqp.Channel`` and ``amqp.Connection`` with mocks standing in
for the socket layer (a channel that was never opened, ``wait`` replaced),
which is exactly the py-amqp behaviour kombu was written against.  Some
``test_connection.py`` cases parse URLs of other transports and need redis,
pymongo, boto3 and sqlalchemy importable: the ``test`` extra installs them
so that nothing is skipped for a missing dependency.  kombu itself marks
one case ``@pytest.mark.skip`` (IPv6 URL parsing); that is the only skip
allowed, and it is not counted as a pass.
"""
import re
import subprocess
import sys

import pytest
from test_kombu_suite import _kombu_source

pytestmark = pytest.mark.slow

SUITES = ('t/unit/transport/test_pyamqp.py', 't/unit/test_connection.py',
          't/unit/test_messaging.py', 't/unit/test_pools.py')

#: kombu 5.7.0's own unconditional skip in these files.
KOMBU_OWN_SKIPS = ('TODO: urllib cannot parse ipv6 urls',)


def test_kombu_unit_suites_pass_unchanged(subprocess_env):
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-rs', '-p',
         'no:cacheprovider', '-p', 'no:rerunfailures', '-o', 'addopts=',
         '-o', 'python_classes=test_*', '-W',
         'ignore::pytest.PytestUnknownMarkWarning', *SUITES],
        cwd=_kombu_source(), env=subprocess_env, capture_output=True,
        text=True, timeout=600)
    out = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, out
    summary = proc.stdout.strip().splitlines()[-1]
    assert 'failed' not in summary and 'error' not in summary, out
    passed = int(re.search(r'(\d+) passed', summary).group(1))
    assert passed >= 319, out
    skips = re.findall(r'^SKIPPED \[\d+\] \S+: (.*)$', proc.stdout, re.M)
    assert all(reason in KOMBU_OWN_SKIPS for reason in skips), skips
    skipped = re.search(r'(\d+) skipped', summary)
    assert (int(skipped.group(1)) if skipped else 0) <= len(KOMBU_OWN_SKIPS)


def test_kombu_suite_runs_on_this_package(subprocess_env):
    from ours import OURS
    probe = subprocess.run(
        [sys.executable, '-c', 'import amqp, kombu.transport.pyamqp as t; '
         'print(t.amqp.__file__)'],
        cwd=_kombu_source(), env=subprocess_env, capture_output=True,
        text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(OURS)), probe.stdout
