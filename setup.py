"""Packaging for amqp, a drop-in replacement for py-amqp 5.x."""
import os
import platform
import re
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding='utf-8') as f:
        return f.read()


# Read, not imported: importing amqp needs vine before it is installed.
VERSION = re.search(r"^__version__ = '([^']+)'",
                    read('amqp', '_version.py'), re.M).group(1)



class OptionalBuildExt(build_ext):
    """Build amqp._speedups when a compiler is there; without it the
    package is complete (pure Python), so a failed build only warns."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, ...
            self._skipped(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skipped(exc)

    @staticmethod
    def _skipped(exc):
        reason = str(exc).strip().splitlines()
        sys.stderr.write(
            'WARNING: amqp._speedups not built (%s): installing the '
            'pure-Python package, which is complete\n' % (
                reason[-1] if reason else type(exc).__name__))


def speedups():
    """The optional compiled module: CPython only, and not when
    AMQP_NO_SPEEDUPS is set (to anything but 0) at build time."""
    if platform.python_implementation() != 'CPython' or \
            os.environ.get('AMQP_NO_SPEEDUPS', '') not in ('', '0'):
        return []
    return [Extension(
        'amqp._speedups', ['amqp/_speedups.c'],
        # the stable ABI: one build for every CPython from 3.9 on
        define_macros=[('Py_LIMITED_API', '0x03090000')],
        py_limited_api=True)]


# mypy 2 cannot check for Python 3.9 (pyproject.toml's python_version).
MYPY = 'mypy>=1.20,<2'

setup(
    name='amqp',
    version=VERSION,
    description='Synchronous AMQP 0-9-1 client; '
                'a drop-in replacement for py-amqp 5.x',
    long_description=read('README.rst'),
    long_description_content_type='text/x-rst',
    packages=['amqp', 'amqp.cli'],
    # PEP 561: amqp ships its types (setuptools 69+ would add the marker
    # anyway; older ones need it named)
    package_data={'amqp': ['py.typed', '_speedups.pyi']},
    ext_modules=speedups(),
    cmdclass={'build_ext': OptionalBuildExt},
    # a wheel with the module is cp39-abi3: every CPython from 3.9 on
    options={'bdist_wheel': {'py_limited_api': 'cp39'}} if speedups()
    else {},
    include_package_data=False,
    zip_safe=False,
    python_requires='>=3.9',
    install_requires=['vine>=5.0,<6'],
    entry_points={'console_scripts': ['amqp = amqp.cli:console_script']},
    extras_require={
        'test': [
            'pytest',
            'pytest-rabbitmq',
            # a test that hangs fails with its stack instead of stalling CI
            'pytest-timeout',
            'hypothesis',
            'pika',
            'cryptography',  # TLS certificates made by the tests
            'kombu>=5.7,<5.8',
            'celery>=5.7,<5.8',
            'sphinx',  # tests/test_docs.py builds the documentation
            MYPY,  # tests/unit/test_typing.py
            # kombu's own unit tests (tests/compat/test_kombu_unit_suite.py)
            # parse URLs of these transports; without them they would skip
            'redis',
            'pymongo',
            'boto3',
            'sqlalchemy',
        ],
        'typecheck': [MYPY],
        'docs': ['sphinx'],
        'gssapi': ['gssapi'],
    },
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Developers',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3 :: Only',
        'Topic :: System :: Networking',
    ],
)
