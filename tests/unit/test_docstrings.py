"""help() on the public API: every public method and property of
Connection, Channel and Message has a docstring whose first line is a
short summary (no pasted spec prose)."""
import inspect

import pytest

import amqp


def _public_members(cls):
    for name in dir(cls):
        if name.startswith('_'):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, type):
            continue  # Connection.Channel is the Channel class
        if inspect.isfunction(attr) or isinstance(attr, property):
            yield name, attr


MEMBERS = [(cls.__name__ + '.' + name, attr)
           for cls in (amqp.Connection, amqp.Channel, amqp.Message)
           for name, attr in _public_members(cls)]


def test_the_public_api_is_found():
    names = {name for name, _ in MEMBERS}
    assert {'Connection.connect', 'Channel.basic_publish',
            'Message.ack', 'Connection.server_capabilities'} <= names


@pytest.mark.parametrize('name,attr', MEMBERS, ids=[n for n, _ in MEMBERS])
def test_has_a_short_summary(name, attr):
    doc = inspect.getdoc(attr)
    assert doc, '%s has no docstring' % name
    first_line = doc.splitlines()[0]
    assert len(first_line) <= 79, '%s: %r' % (name, first_line)


@pytest.mark.parametrize('name,attr', [
    (name, attr) for name, attr in MEMBERS if inspect.isfunction(attr)
], ids=[n for n, a in MEMBERS if inspect.isfunction(a)])
def test_help_gives_the_signature(name, attr):
    """help() shows the real parameters: from the function itself, or,
    when it takes ``*args, **kwargs``, spelled out in its docstring."""
    params = inspect.signature(attr).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        method = name.split('.')[1]
        assert '``%s(' % method in inspect.getdoc(attr), name


def test_help_shows_the_signature_and_the_summary():
    text = pydoc_text(amqp.Channel.basic_get)
    # the parameters with their annotations and defaults
    assert "basic_get(self, queue: 'str' = ''" in text
    assert 'Fetch one message' in text


def pydoc_text(obj):
    import pydoc
    return pydoc.render_doc(obj, renderer=pydoc.plaintext)
