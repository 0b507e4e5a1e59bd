"""The package keeps the shape docs/design.rst describes.

Read from the source with ``ast``: imports point one way (no cycles, the
layers of the module map), no module reaches into another module's private
names, and protocol numbers (ids, frame types, reply codes, argument
formats) appear only in ``spec.py``.
"""
import ast
from pathlib import Path

import pytest

from amqp import spec

PACKAGE = Path(__file__).resolve().parents[2] / 'amqp'
#: module name within the package (``cli`` for the command-line package,
#: ``cli.commands`` for its modules) -> file
MODULES = {p.stem: p for p in sorted(PACKAGE.glob('*.py'))}
MODULES.update({('cli' if p.stem == '__init__' else 'cli.' + p.stem): p
                for p in sorted((PACKAGE / 'cli').glob('*.py'))})
#: compiled modules, read from their type stubs
MODULES.update({p.stem: p for p in sorted(PACKAGE.glob('_*.pyi'))})

#: The module map: a module may import only modules of a lower layer.
LAYERS = {
    'spec': 0, '_version': 0, 'utils': 0, '_speedups': 0,
    'platform': 1,
    'exceptions': 1,
    'tables': 2, 'transport': 2,
    'serialization': 3,
    'basic_message': 4, 'sasl': 4,
    # protocol's basic_return_t carries a Message (a typing-only import)
    'method_framing': 5, 'protocol': 5,
    'wire': 6, 'reader': 6,
    '_confirms': 7, 'abstract_channel': 7,
    # parts of Channel and Connection kept in modules of their own
    'publishing': 8, 'handshake': 8, 'heartbeats': 8,
    'channel': 9,
    'connection': 10,
    # automatic recovery sits above the connection
    'recovery': 11,
    '__init__': 12,
    # the command line sits on top of the public API
    'cli.localbroker': 3, 'cli.roundtrip': 13, 'cli.commands': 14, 'cli': 15,
    '__main__': 16,
}
#: transport sits beside the codec: it may import only exceptions (and
#: the platform constants py-amqp's transport re-exports), and only
#: connection may import it (the rest of the package is I/O-free).
ONLY_IMPORTS = {'transport': {'exceptions', 'platform'}}
IMPORTED_ONLY_BY = {'transport': {'connection', 'reader', 'handshake',
                                  'heartbeats', '__init__'},
                    # the compiled twins are chosen once, where their pure
                    # twins live (STYLE.md)
                    '_speedups': {'serialization'}}
#: Pure modules never touch the operating system (STYLE.md).
PURE = ('spec', 'tables', 'serialization', 'basic_message',
        'method_framing')
IO_MODULES = {'socket', 'ssl', 'select', 'time'}


def _tree(name):
    return ast.parse(MODULES[name].read_text(), str(MODULES[name]))


def _package_imports(name):
    """Modules of this package that ``name`` imports (anywhere in it)."""
    found = set()
    # the package ``name`` is in, as a list of names below amqp
    package = ['cli'] if name == 'cli' or name.startswith('cli.') else []

    def module(parts):
        """Our name for amqp.<parts>: a module, else the package
        __init__ it is defined in."""
        for n in (2, 1):
            candidate = '.'.join(parts[:n])
            if len(parts) >= n and candidate in MODULES:
                return candidate
        return '.'.join(parts[:1]) or '__init__'

    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and \
                    node.module.split('.')[0] == 'amqp':
                base = node.module.split('.')[1:]
            elif node.level:
                base = package[:len(package) - (node.level - 1)] + (
                    node.module.split('.') if node.module else [])
            else:
                continue
            names = [base + [a.name] for a in node.names
                     if '.'.join(base + [a.name]) in MODULES]
            if names:
                found.update(module(n) for n in names)
            if len(names) < len(node.names):
                found.add(module(base) if base else '__init__')
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                if parts[0] == 'amqp':
                    found.add(module(parts[1:]) if len(parts) > 1
                              else '__init__')
    found.discard(name)
    return found


def _other_imports(name):
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            found.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and \
                node.module:
            found.add(node.module.split('.')[0])
    return found


GRAPH = {name: _package_imports(name) for name in MODULES}


def test_the_import_graph_has_no_cycles():
    state = {}

    def visit(name, path):
        if state.get(name) == 'done':
            return
        assert state.get(name) != 'active', 'import cycle: ' + ' -> '.join(
            path[path.index(name):] + [name])
        state[name] = 'active'
        for dep in sorted(GRAPH[name]):
            visit(dep, path + [name])
        state[name] = 'done'

    for name in GRAPH:
        visit(name, [])


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_imports_point_down_the_module_map(name):
    for dep in GRAPH[name]:
        assert dep in LAYERS and LAYERS[dep] < LAYERS[name], (
            '%s imports %s, which is not below it in the module map'
            % (name, dep))
    if name in ONLY_IMPORTS:
        assert GRAPH[name] <= ONLY_IMPORTS[name]


@pytest.mark.parametrize('name', sorted(IMPORTED_ONLY_BY))
def test_only_the_connection_imports_the_transport(name):
    importers = {m for m, deps in GRAPH.items() if name in deps}
    assert importers <= IMPORTED_ONLY_BY[name]


@pytest.mark.parametrize('name', PURE)
def test_pure_modules_do_no_io(name):
    assert not _other_imports(name) & IO_MODULES


def _defined_private_names(trees):
    """module -> private names it defines (module level, classes,
    ``self._x = ...``)."""
    defined = {}
    for name, tree in trees.items():
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and \
                    isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and \
                    isinstance(node.ctx, ast.Store):
                names.add(node.id)
        defined[name] = {n for n in names
                         if n.startswith('_') and not n.startswith('__')}
    return defined


def _reach_throughs(trees):
    """``obj._name`` where ``_name`` belongs to another module (and obj is
    not self/cls), and private names imported from another module."""
    defined = _defined_private_names(trees)
    problems = []
    for name, tree in trees.items():
        own = defined[name]
        elsewhere = set().union(*(d for m, d in defined.items()
                                  if m != name)) - own
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in elsewhere:
                base = node.value
                if isinstance(base, ast.Name) and base.id in ('self', 'cls'):
                    continue
                problems.append('%s:%d: .%s' % (name, node.lineno,
                                                node.attr))
            elif isinstance(node, ast.ImportFrom) and node.level:
                for alias in node.names:
                    if alias.name.startswith('_') and \
                            alias.name not in trees and \
                            not alias.name.startswith('__'):
                        problems.append('%s:%d: imports %s' % (
                            name, node.lineno, alias.name))
    return problems


def test_no_module_reaches_into_another_modules_private_names():
    assert _reach_throughs({name: _tree(name) for name in MODULES}) == []


def test_the_reach_through_check_catches_what_it_should():
    trees = {
        'a': ast.parse('class A:\n    def _hidden(self):\n        pass\n'
                       '_helper = 1\n'),
        'b': ast.parse('from .a import _helper\n'
                       'def f(conn):\n    conn._hidden()\n'
                       'def g(self):\n    self._hidden()\n'),
    }
    assert sorted(_reach_throughs(trees)) == ['b:1: imports _helper',
                                             'b:3: ._hidden']


# ---------------------------------------------------------------------------
# Protocol numbers come from spec.py

def _is_format(text):
    return len(text) >= 2 and set(text) <= set('bBoslLfSxFAT') and \
        text in {m.args for m in spec.METHODS.values()}


# 200 (reply-success) is too common a number to police
REPLY_CODES = {getattr(spec, n) for n in dir(spec)
               if n.isupper() and isinstance(getattr(spec, n), int) and
               300 <= getattr(spec, n) < 600}
FRAME_TYPES = set(spec.FRAME_TYPES)
CLASS_IDS = set(spec.CLASS_NAMES)


def _bare_numbers(name, tree=None):
    """Protocol numbers spelled out in module ``name``."""
    found = []
    tree = _tree(name) if tree is None else tree
    for node in ast.walk(tree):
        where = '%s:%d' % (name, getattr(node, 'lineno', 0))
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str) and _is_format(v):
                found.append('%s: argument format %r' % (where, v))
            elif isinstance(v, bytes) and (b'\xce' in v or b'AMQP\x00' in v):
                found.append('%s: frame bytes %r' % (where, v))
            elif type(v) is int and (v in REPLY_CODES or v in (
                    spec.FRAME_END, spec.FRAME_MIN_SIZE,
                    spec.FRAME_MAX_DEFAULT)):
                found.append('%s: %d' % (where, v))
        elif isinstance(node, ast.Compare):
            # frame_type == 1 and the like
            names = [n for n in [node.left] + node.comparators
                     if isinstance(n, ast.Name) and 'type' in n.id]
            ints = [n.value for n in [node.left] + node.comparators
                    if isinstance(n, ast.Constant) and type(n.value) is int]
            if names and set(ints) & FRAME_TYPES:
                found.append('%s: frame type %s' % (where, ints))
        elif isinstance(node, ast.Call) and \
                isinstance(node.func, ast.Attribute) and \
                node.func.attr in ('pack', 'pack_into') and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and \
                    type(first.value) is int and \
                    first.value in FRAME_TYPES | CLASS_IDS:
                found.append('%s: packs %d' % (where, first.value))
        elif isinstance(node, ast.Tuple) and len(node.elts) == 2 and all(
                isinstance(e, ast.Constant) and type(e.value) is int
                for e in node.elts):
            if tuple(e.value for e in node.elts) in spec.METHODS:
                found.append('%s: method id %r' % (where, tuple(
                    e.value for e in node.elts)))
    return found


@pytest.mark.parametrize('name', sorted(set(MODULES) - {'spec'}))
def test_protocol_numbers_come_from_spec(name):
    assert _bare_numbers(name) == []


def test_the_number_check_catches_what_it_should():
    # the check itself: each kind of bare number is found
    tree = ast.parse(
        "if frame_type == 3: pass\n"
        "x = 'BssbbbbbF'\n"
        "y = (60, 40)\n"
        "z = b'\\xce'\n"
        "s.pack(2, 0, 0)\n"
        "code = 404\n")
    found = _bare_numbers('example', tree)
    assert len(found) == 6, found
