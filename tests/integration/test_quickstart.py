"""docs/quickstart.rst works as written: its Python blocks run, in order
and in one namespace, against the session's broker (AMQP_URL points at
it), and print what the page says they print."""
import re
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).parents[2] / 'docs' / 'quickstart.rst'


def python_blocks(text):
    """The bodies of the ``.. code-block:: python`` directives, dedented."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if re.match(r'\.\. code-block:: python\s*$', lines[i]):
            i += 1
            while i < len(lines) and (not lines[i].strip() or
                                      lines[i].lstrip().startswith(':')):
                i += 1   # options and the blank line before the code
            body = []
            while i < len(lines) and (not lines[i].strip() or
                                      lines[i].startswith('    ')):
                body.append(lines[i][4:])
                i += 1
            blocks.append('\n'.join(body).strip('\n') + '\n')
        else:
            i += 1
    return blocks


def test_the_parser_finds_every_block():
    text = QUICKSTART.read_text()
    blocks = python_blocks(text)
    assert len(blocks) == text.count('.. code-block:: python') >= 8
    assert blocks[0].startswith('import os\n')
    assert all(not b.startswith(' ') for b in blocks)


def test_quickstart_runs(broker, conn, monkeypatch, capsys):
    monkeypatch.setenv('AMQP_URL', broker.url)
    conn.channel().queue_delete('quickstart')   # left by an earlier run
    namespace = {'__name__': 'quickstart'}
    for n, block in enumerate(python_blocks(QUICKSTART.read_text())):
        code = compile(block, '%s[block %d]' % (QUICKSTART.name, n), 'exec')
        exec(code, namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        'RabbitMQ',
        'quickstart 0 0',
        "Hello, world! {'lang': 'en'}",
        "['task 0', 'task 1', 'task 2']",
        '100 messages confirmed',
        'returned: NO_ROUTE',
        '101 messages purged',
    ]
    assert not namespace['conn'].connected


@pytest.mark.parametrize('text,expected', [
    ('.. code-block:: python\n\n    a = 1\n\n    b = 2\n\nprose\n',
     ['a = 1\n\nb = 2\n']),
    ('.. code-block:: python\n   :caption: x\n\n    if a:\n        b()\n',
     ['if a:\n    b()\n']),
    ('.. code-block:: console\n\n    $ ls\n', []),
])
def test_python_blocks(text, expected):
    assert python_blocks(text) == expected
