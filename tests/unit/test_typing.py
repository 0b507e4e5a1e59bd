"""``mypy --strict`` is clean on the package, and ``py.typed`` gives users
real types.

The package's own check uses the configuration in pyproject.toml (strict,
Python 3.9, the modules not yet annotated); ``tox -e typecheck`` runs the
same.  The user's side is checked as a user would run it: ``mypy
--strict`` on ``examples/typed_client.py`` from a directory outside this
checkout, with no configuration file and no MYPYPATH, so that ``amqp`` is
found only as an installed package, and only because it ships
``py.typed``.  A snippet of wrong calls must be rejected (the types are
real, not ``Any``), and the same package without ``py.typed`` must be
untyped to mypy.

mypy comes with the ``test`` extra: when it is missing these tests fail,
they do not skip, so that ``py.typed`` never ships unchecked.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / 'examples' / 'typed_client.py'

def _require_mypy():
    if importlib.util.find_spec('mypy') is None:
        pytest.fail("mypy is not installed (pip install '.[test]')")


def test_mypy_strict_is_clean():
    _require_mypy()
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


# -- the user's side ------------------------------------------------------
def _run(args, cwd, env, timeout=600):
    return subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout,
                          check=False)


def _where_amqp_imports_from(cwd, env):
    done = _run([sys.executable, '-c',
                 'import amqp, os; print(os.path.dirname('
                 'os.path.realpath(amqp.__file__)))'], cwd, env)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def _install_copy(work, env):
    """``pip install .`` of this checkout into ``work/site``; returns that
    directory.  From a copy of the sources, so that the build leaves
    nothing behind in the checkout."""
    src = work / 'src'
    src.mkdir()
    for name in ('setup.py', 'pyproject.toml', 'README.rst'):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / 'amqp', src / 'amqp',
                    ignore=shutil.ignore_patterns('__pycache__'))
    site = work / 'site'
    command = [sys.executable, '-m', 'pip', 'install', '--quiet',
               '--no-deps', '--target', str(site)]
    if importlib.util.find_spec('setuptools') and \
            importlib.util.find_spec('wheel'):
        command.append('--no-build-isolation')  # offline when it can
    done = _run(command + [str(src)], work, env)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


@pytest.fixture(scope='module')
def user(tmp_path_factory):
    """Where and how a user's mypy runs: a directory outside the checkout,
    no MYPYPATH, and ``amqp`` as installed by pip.

    ``pip install '.[test]'`` (the README) installs the package for real
    and it is used as it is.  An editable install is invisible to mypy
    (setuptools resolves it with an import hook mypy does not run), so
    then the checkout is installed into a temporary directory the way pip
    installs it, and put on PYTHONPATH, which mypy searches like
    site-packages: a package there is typed only with ``py.typed``.
    """
    _require_mypy()
    work = tmp_path_factory.mktemp('user')
    env = {k: v for k, v in os.environ.items()
           if k not in ('MYPYPATH', 'PYTHONPATH')}
    package = _where_amqp_imports_from(work, env)
    if REPO in package.parents:
        env['PYTHONPATH'] = str(_install_copy(work, env))
        package = _where_amqp_imports_from(work, env)
        assert REPO not in package.parents, package
    assert (package / 'py.typed').is_file(), (
        'py.typed is not installed with the package (setup.py '
        'package_data)')
    return SimpleNamespace(cwd=work, env=env, package=package)


def _user_mypy(user, *args):
    """``mypy --strict ARGS`` as the user runs it; returns (exit status,
    output lines)."""
    done = _run([sys.executable, '-m', 'mypy', '--config-file=', '--strict',
                 '--cache-dir', str(user.cwd / '.mypy_cache'), *args],
                user.cwd, user.env)
    assert 'Traceback' not in done.stderr, done.stderr
    return done.returncode, (done.stdout + done.stderr).splitlines()


def test_example_is_strict_clean(user):
    status, lines = _user_mypy(user, '--verbose', str(EXAMPLE))
    report = '\n'.join(line for line in lines if 'LOG:' not in line)
    assert status == 0, report
    assert 'Success: no issues found in 1 source file' in lines, report
    # and mypy read the installed package, not this checkout
    seen = {Path(os.path.realpath(m)) for line in lines
            for m in re.findall(r'(/\S+/amqp/connection\.py)\b', line)}
    assert seen, 'mypy -v did not say where amqp.connection came from'
    assert seen == {user.package / 'connection.py'}, seen


#: (line, what mypy must say about it): ``None`` for nothing, ``reveal``
#: for the revealed type, else the error code and a piece of the message.
_WRONG = [
    ('import amqp', None),
    ("conn = amqp.Connection('localhost:5672', heartbeat=30)", None),
    ('reveal_type(conn)', ('reveal', 'amqp.connection.Connection')),
    ('reveal_type(conn.channel())', ('reveal', 'amqp.channel.Channel')),
    ("reveal_type(amqp.Connection.from_url('amqp://h//'))",
     ('reveal', 'amqp.connection.Connection')),
    ('reveal_type(conn.__enter__())',
     ('reveal', 'amqp.connection.Connection')),
    ('reveal_type(conn.frames_pending())', ('reveal', 'bool')),
    ("conn.drain_events(timeout='soon')", ('arg-type', '"drain_events"')),
    ("amqp.Connection(heartbeat='30')", ('arg-type', '"heartbeat"')),
    ("conn.channel(channel_id='1')", ('arg-type', '"channel"')),
    ('name: str = conn.channel()', ('assignment', '"Channel"')),
    ("conn.close(reply_code='oops')", ('arg-type', '"close"')),
    ('conn.no_such_method()', ('attr-defined', 'no_such_method')),
    ('ch = conn.channel()', None),
    ('ch.basic_publish(123)', ('arg-type', '"basic_publish"')),
    ("reveal_type(ch.basic_get('q'))",
     ('reveal', 'amqp.basic_message.Message[bytes | str] | None')),
    ("ch.basic_qos(0, '10', False)", ('arg-type', '"basic_qos"')),
]


def test_mypy_rejects_wrong_calls(user):
    snippet = user.cwd / 'wrong.py'
    snippet.write_text('\n'.join(line for line, _ in _WRONG) + '\n')
    status, lines = _user_mypy(user, str(snippet))
    assert status == 1, '\n'.join(lines)
    said = {}
    for line in lines:
        match = re.search(r'wrong\.py:(\d+): (error|note): (.*)$', line)
        if match:
            said.setdefault(int(match.group(1)), []).append(match.group(3))
    for number, (line, expected) in enumerate(_WRONG, 1):
        got = said.pop(number, [])
        if expected is None:
            assert not got, (line, got)
        elif expected[0] == 'reveal':
            assert got == ['Revealed type is "%s"' % expected[1]], (line, got)
        else:
            code, fragment = expected
            assert len(got) == 1 and got[0].endswith('[%s]' % code) and \
                fragment in got[0], (line, got)
    assert not said, said


def test_without_py_typed_the_package_is_untyped(user, tmp_path):
    """py.typed is what makes it typed: the same package without it, in
    the site-packages of an otherwise empty virtualenv, is skipped."""
    venv = tmp_path / 'venv'
    done = _run([sys.executable, '-m', 'venv', '--without-pip', str(venv)],
                tmp_path, user.env)
    assert done.returncode == 0, done.stderr
    python = venv / ('Scripts/python.exe' if os.name == 'nt'
                     else 'bin/python')
    done = _run([str(python), '-c', 'import site; '
                 'print(site.getsitepackages()[0])'], tmp_path, user.env)
    site_packages = Path(done.stdout.strip())
    shutil.copytree(user.package, site_packages / 'amqp',
                    ignore=shutil.ignore_patterns('__pycache__', 'py.typed'))
    snippet = tmp_path / 'uses_amqp.py'
    snippet.write_text('import amqp\n')
    env = {k: v for k, v in user.env.items() if k != 'PYTHONPATH'}
    done = _run([sys.executable, '-m', 'mypy', '--config-file=', '--strict',
                 '--no-incremental', '--python-executable', str(python),
                 str(snippet)], tmp_path, env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert 'missing library stubs or py.typed marker' in output, output
    assert '[import-untyped]' in output, output
