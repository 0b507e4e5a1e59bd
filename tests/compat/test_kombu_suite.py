"""kombu's own integration tests for its py-amqp transport
(``t/integration/test_py_amqp.py`` from the sdist of the installed kombu),
run unchanged against the session's RabbitMQ on this package.

kombu ships these tests to check py-amqp; passing them is the most direct
evidence that kombu runs on us unchanged.  The sdist is downloaded from
PyPI once and cached under the system temp directory.
"""
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import kombu
import pytest

pytestmark = pytest.mark.slow

CACHE = Path(tempfile.gettempdir()) / f'amqp-compat-kombu-{kombu.__version__}'


def _kombu_source():
    tree = CACHE / f'kombu-{kombu.__version__}'
    if (tree / 't' / 'integration' / 'test_py_amqp.py').exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    fetch = subprocess.run(
        [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps',
         '--no-binary', ':all:', '--disable-pip-version-check',
         '-d', str(CACHE), f'kombu=={kombu.__version__}'],
        capture_output=True, text=True, timeout=300)
    assert fetch.returncode == 0, fetch.stderr[-2000:]
    sdist, = CACHE.glob('kombu-*.tar.gz')
    with tarfile.open(sdist) as tar:
        try:
            tar.extractall(CACHE, filter='data')
        except TypeError:  # Python without extraction filters
            tar.extractall(CACHE)
    return tree


def test_kombu_py_amqp_integration_suite(broker, subprocess_env):
    env = dict(subprocess_env)
    env.update(RABBITMQ_HOST=broker.host, RABBITMQ_5672_TCP=str(broker.port))
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         '-p', 'no:rerunfailures', '-o', 'addopts=',
         '-o', 'python_classes=test_*', 't/integration/test_py_amqp.py'],
        cwd=_kombu_source(), env=env, capture_output=True, text=True,
        timeout=600)
    out = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, out
    passed = re.search(r'(\d+) passed', proc.stdout)
    assert passed and int(passed.group(1)) >= 50, out
    assert 'failed' not in proc.stdout.splitlines()[-1], out
