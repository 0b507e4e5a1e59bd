"""``python -m amqp``: the command line (see :mod:`amqp.cli`).

Without a subcommand it runs the publish/consume round trip of
:mod:`amqp.cli.roundtrip`; ``python -m amqp --help`` lists the rest.
"""
import sys

from amqp.cli import main

if __name__ == '__main__':
    sys.exit(main(prog='python -m amqp'))
