"""Sphinx configuration for amqp's documentation."""
import os
import re
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, os.pardir, 'amqp', '_version.py')) as _f:
    release = re.search(r"^__version__ = '([^']+)'", _f.read(), re.M)[1]
version = '.'.join(release.split('.')[:2])

project = 'amqp'
author = 'amqp contributors'
copyright = 'amqp contributors'

# autodoc imports the package from this checkout (it needs vine).
sys.path.insert(0, os.path.join(_HERE, os.pardir))

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.intersphinx']
autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True, 'show-inheritance': True}
intersphinx_mapping = {}
templates_path = []
exclude_patterns = ['_build']
html_theme = 'alabaster'
