"""Sphinx configuration for amqp's documentation."""
import os
import re

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, os.pardir, 'amqp', '__init__.py')) as _f:
    release = re.search(r"^__version__ = '([^']+)'", _f.read(), re.M)[1]
version = '.'.join(release.split('.')[:2])

project = 'amqp'
author = 'amqp contributors'
copyright = 'amqp contributors'

extensions = []
templates_path = []
exclude_patterns = ['_build']
html_theme = 'alabaster'
