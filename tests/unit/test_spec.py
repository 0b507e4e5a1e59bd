"""amqp.spec checked against the AMQP 0-9-1 spec and RabbitMQ's extensions.

Every expected value below is written out by hand from the 0-9-1 XML/PDF
(class and method ids, content flags, synchronous replies) and from
https://www.rabbitmq.com/docs/extensions (confirm, nack, exchange bindings,
connection.blocked, connection.update-secret), not derived from the module
under test.
"""
import os

import pytest

import amqp
from amqp import spec

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def test_tests_run_against_this_checkout():
    # /tmp/venv has py-amqp installed as ``amqp``; these tests are for ours.
    assert os.path.abspath(amqp.__file__).startswith(REPO + os.sep)


# name: (class id, method id, carries content, synchronous reply names)
EXPECTED = {
    'connection.start': (10, 10, False, ('connection.start-ok',)),
    'connection.start-ok': (10, 11, False, ()),
    'connection.secure': (10, 20, False, ('connection.secure-ok',)),
    'connection.secure-ok': (10, 21, False, ()),
    'connection.tune': (10, 30, False, ('connection.tune-ok',)),
    'connection.tune-ok': (10, 31, False, ()),
    'connection.open': (10, 40, False, ('connection.open-ok',)),
    'connection.open-ok': (10, 41, False, ()),
    'connection.close': (10, 50, False, ('connection.close-ok',)),
    'connection.close-ok': (10, 51, False, ()),
    'connection.blocked': (10, 60, False, ()),
    'connection.unblocked': (10, 61, False, ()),
    'connection.update-secret': (10, 70, False,
                                 ('connection.update-secret-ok',)),
    'connection.update-secret-ok': (10, 71, False, ()),
    'channel.open': (20, 10, False, ('channel.open-ok',)),
    'channel.open-ok': (20, 11, False, ()),
    'channel.flow': (20, 20, False, ('channel.flow-ok',)),
    'channel.flow-ok': (20, 21, False, ()),
    'channel.close': (20, 40, False, ('channel.close-ok',)),
    'channel.close-ok': (20, 41, False, ()),
    'access.request': (30, 10, False, ('access.request-ok',)),
    'access.request-ok': (30, 11, False, ()),
    'exchange.declare': (40, 10, False, ('exchange.declare-ok',)),
    'exchange.declare-ok': (40, 11, False, ()),
    'exchange.delete': (40, 20, False, ('exchange.delete-ok',)),
    'exchange.delete-ok': (40, 21, False, ()),
    'exchange.bind': (40, 30, False, ('exchange.bind-ok',)),
    'exchange.bind-ok': (40, 31, False, ()),
    'exchange.unbind': (40, 40, False, ('exchange.unbind-ok',)),
    'exchange.unbind-ok': (40, 51, False, ()),
    'queue.declare': (50, 10, False, ('queue.declare-ok',)),
    'queue.declare-ok': (50, 11, False, ()),
    'queue.bind': (50, 20, False, ('queue.bind-ok',)),
    'queue.bind-ok': (50, 21, False, ()),
    'queue.purge': (50, 30, False, ('queue.purge-ok',)),
    'queue.purge-ok': (50, 31, False, ()),
    'queue.delete': (50, 40, False, ('queue.delete-ok',)),
    'queue.delete-ok': (50, 41, False, ()),
    'queue.unbind': (50, 50, False, ('queue.unbind-ok',)),
    'queue.unbind-ok': (50, 51, False, ()),
    'basic.qos': (60, 10, False, ('basic.qos-ok',)),
    'basic.qos-ok': (60, 11, False, ()),
    'basic.consume': (60, 20, False, ('basic.consume-ok',)),
    'basic.consume-ok': (60, 21, False, ()),
    'basic.cancel': (60, 30, False, ('basic.cancel-ok',)),
    'basic.cancel-ok': (60, 31, False, ()),
    'basic.publish': (60, 40, True, ()),
    'basic.return': (60, 50, True, ()),
    'basic.deliver': (60, 60, True, ()),
    'basic.get': (60, 70, False, ('basic.get-ok', 'basic.get-empty')),
    'basic.get-ok': (60, 71, True, ()),
    'basic.get-empty': (60, 72, False, ()),
    'basic.ack': (60, 80, False, ()),
    'basic.reject': (60, 90, False, ()),
    'basic.recover-async': (60, 100, False, ()),
    'basic.recover': (60, 110, False, ('basic.recover-ok',)),
    'basic.recover-ok': (60, 111, False, ()),
    'basic.nack': (60, 120, False, ()),
    'confirm.select': (85, 10, False, ('confirm.select-ok',)),
    'confirm.select-ok': (85, 11, False, ()),
    'tx.select': (90, 10, False, ('tx.select-ok',)),
    'tx.select-ok': (90, 11, False, ()),
    'tx.commit': (90, 20, False, ('tx.commit-ok',)),
    'tx.commit-ok': (90, 21, False, ()),
    'tx.rollback': (90, 30, False, ('tx.rollback-ok',)),
    'tx.rollback-ok': (90, 31, False, ()),
}


def test_the_table_holds_exactly_the_expected_methods():
    assert set(spec.METHODS_BY_NAME) == set(EXPECTED)
    assert len(spec.METHODS) == len(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_method_ids_content_and_replies(name):
    class_id, method_id, content, replies = EXPECTED[name]
    m = spec.METHODS_BY_NAME[name]
    assert (m.class_id, m.method_id) == (class_id, method_id)
    assert m.sig == (class_id, method_id)
    assert spec.METHODS[(class_id, method_id)] is m
    assert m.name == name
    assert m.content is content
    assert tuple(spec.METHODS[r].name for r in m.replies) == replies
    assert m.synchronous is bool(replies)
    assert len(m.arg_names) == len(m.args)
    assert spec.method_name((class_id, method_id)) == name


@pytest.mark.parametrize('sig, name', [
    ((60, 120), 'basic.nack'),
    ((85, 10), 'confirm.select'),
    ((40, 51), 'exchange.unbind-ok'),
    ((10, 70), 'connection.update-secret'),
    ((10, 60), 'connection.blocked'),
    ((10, 61), 'connection.unblocked'),
])
def test_rabbitmq_extensions(sig, name):
    assert spec.METHODS[sig].name == name


def test_py_amqp_style_constants():
    assert spec.Basic.Publish == (60, 40)
    assert spec.Basic.Nack == (60, 120)
    assert spec.Basic.RecoverAsync == (60, 100)
    assert spec.Basic.GetEmpty == (60, 72)
    assert spec.Confirm.Select == (85, 10)
    assert spec.Exchange.UnbindOk == (40, 51)
    assert spec.Connection.UpdateSecret == (10, 70)
    assert spec.Connection.Blocked == (10, 60)
    assert spec.Connection.CLASS_ID == 10
    assert spec.Tx.CommitOk == (90, 21)
    assert spec.Queue.DeclareOk == (50, 11)


def test_content_methods():
    assert spec.CONTENT_METHODS == {(60, 40), (60, 50), (60, 60), (60, 71)}


def test_method_helper_is_py_amqp_compatible():
    m = spec.method(spec.Basic.Ack, 'Lb')
    assert m == ((60, 80), 'Lb', False)
    assert m.method_sig == (60, 80) and m.args == 'Lb' and not m.content
    assert spec.method_name(None) is None
    assert spec.method_name((1, 1)) is None
    assert spec.method_name([60, 40]) == 'basic.publish'


def test_argument_names_match_py_amqp_keywords():
    # channel.py builds calls from these; kombu passes them as keywords.
    assert spec.METHODS_BY_NAME['basic.consume'].arg_names == (
        'ticket', 'queue', 'consumer_tag', 'no_local', 'no_ack', 'exclusive',
        'nowait', 'arguments')
    assert spec.METHODS_BY_NAME['basic.deliver'].arg_names == (
        'consumer_tag', 'delivery_tag', 'redelivered', 'exchange',
        'routing_key')
    assert spec.METHODS_BY_NAME['basic.qos'].arg_names == (
        'prefetch_size', 'prefetch_count', 'a_global')


def test_frame_constants():
    assert spec.PROTOCOL_HEADER == b'AMQP\x00\x00\x09\x01'
    assert (spec.FRAME_METHOD, spec.FRAME_HEADER, spec.FRAME_BODY,
            spec.FRAME_HEARTBEAT) == (1, 2, 3, 8)
    assert spec.FRAME_END == 0xCE and spec.FRAME_END_BYTE == b'\xce'
    assert spec.FRAME_OVERHEAD == 8
    assert spec.FRAME_MIN_SIZE == 4096


def test_reply_codes():
    assert (spec.REPLY_SUCCESS, spec.CONTENT_TOO_LARGE, spec.NO_ROUTE,
            spec.NO_CONSUMERS, spec.CONNECTION_FORCED, spec.INVALID_PATH,
            spec.ACCESS_REFUSED, spec.NOT_FOUND, spec.RESOURCE_LOCKED,
            spec.PRECONDITION_FAILED) == (
                200, 311, 312, 313, 320, 402, 403, 404, 405, 406)
    assert (spec.FRAME_ERROR, spec.SYNTAX_ERROR, spec.COMMAND_INVALID,
            spec.CHANNEL_ERROR, spec.UNEXPECTED_FRAME, spec.RESOURCE_ERROR,
            spec.NOT_ALLOWED, spec.NOT_IMPLEMENTED, spec.INTERNAL_ERROR) == (
                501, 502, 503, 504, 505, 506, 530, 540, 541)


def test_basic_properties_in_flag_order():
    assert spec.BASIC_PROPERTIES == (
        ('content_type', 's'), ('content_encoding', 's'),
        ('application_headers', 'F'), ('delivery_mode', 'o'),
        ('priority', 'o'), ('correlation_id', 's'), ('reply_to', 's'),
        ('expiration', 's'), ('message_id', 's'), ('timestamp', 'T'),
        ('type', 's'), ('user_id', 's'), ('app_id', 's'),
        ('cluster_id', 's'),
    )


def test_each_signature_is_one_object():
    """The keys of METHODS are the constants (spec.Basic.Ack ...), so a
    signature handed out as one is found by identity everywhere."""
    keys = {id(sig) for sig in spec.METHODS}
    for cls in (spec.Connection, spec.Channel, spec.Access, spec.Exchange,
                spec.Queue, spec.Basic, spec.Confirm, spec.Tx):
        for name, value in vars(cls).items():
            if isinstance(value, tuple) and not name.startswith('_'):
                assert id(value) in keys, (cls.__name__, name)
