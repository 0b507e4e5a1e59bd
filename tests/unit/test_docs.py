"""The documentation: it builds with ``sphinx-build -W`` (warnings are
errors), every page is in the toctree, the Python examples compile, and
the exit statuses listed in docs/cli.rst are the command's."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from amqp.cli.commands import EXIT_CODES

DOCS = Path(__file__).parents[2] / 'docs'
#: pages deliberately left out of the toctree (none today)
NOT_IN_TOCTREE = set()


def _python_blocks(text):
    """(line number, code) of each ``.. code-block:: python``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'(\s*)\.\. code-block:: python\s*$', line)
        if not m:
            continue
        indent = len(m.group(1)) + 4
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or
                                  lines[j].strip().startswith(':')):
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or
                                  len(lines[j]) - len(lines[j].lstrip())
                                  >= indent):
            body.append(lines[j][indent:])
            j += 1
        yield i + 1, '\n'.join(body)


@pytest.mark.slow
def test_sphinx_build_without_warnings(tmp_path):
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q',
         '-b', 'html', '-d', str(tmp_path / 'doctrees'), str(DOCS),
         str(tmp_path / 'html')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / 'html' / 'quickstart.html').exists()
    assert (tmp_path / 'html' / 'cli.html').exists()


def test_every_page_is_in_the_toctree():
    index = (DOCS / 'index.rst').read_text()
    listed = set(re.findall(r'^   (\w+)$', index, re.M))
    pages = {p.stem for p in DOCS.glob('*.rst')} - {'index'}
    assert pages - listed == NOT_IN_TOCTREE


@pytest.mark.parametrize('page', sorted(p.name for p in DOCS.glob('*.rst')))
def test_python_examples_compile(page):
    text = (DOCS / page).read_text()
    for line, code in _python_blocks(text):
        try:
            compile(code, '%s:%d' % (page, line), 'exec')
        except SyntaxError as exc:
            pytest.fail('%s line %d: %s' % (page, line, exc))


def test_cli_page_lists_the_exit_statuses():
    text = (DOCS / 'cli.rst').read_text()
    table = text.split('.. exit-codes-start')[1].split('.. exit-codes-end')[0]
    rows = {}
    current = None
    for line in table.splitlines():
        m = re.match(r'^(\d+)\s+(.*)$', line)
        if m:
            current = int(m.group(1))
            rows[current] = m.group(2).strip()
        elif line.startswith('       ') and current is not None:
            rows[current] += ' ' + line.strip()
    assert rows == dict(EXIT_CODES)
