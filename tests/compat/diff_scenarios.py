"""Scenarios for the differential harness (test_differential.py).

``python diff_scenarios.py LABEL FAKE_HOST BROKER_HOST`` runs every scenario
on whichever ``amqp`` this interpreter imports (py-amqp 5.4.2 in the
reference virtualenv, or this package) and prints one line
``RESULT:{json}``: scenario name -> what it observed.  The test runs it on
both libraries and compares the observations, plus the bytes each client
wrote to the fake broker.

A scenario is a function returning a dict of observations.  Observations
are plain JSON: return values, exceptions as ``{'raised': class name,
'reply_code', 'reply_text', 'channel_error', ...}``, attributes, bytes as
hex.  Scenarios that talk to the fake broker connect with the virtual host
``LABEL/SCENARIO`` so the broker knows which script to run and whose bytes
it is keeping; they must do the same calls in the same order on both
libraries.
"""
import collections
import enum
import json
import pickle
import socket
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import amqp

LABEL = FAKE = BROKER = None
SCENARIOS = {}
TIMEOUT = 5


def scenario(fun):
    SCENARIOS[fun.__name__] = fun
    return fun


def describe(value, depth=0):
    """A JSON-friendly picture of ``value``."""
    if depth > 6:
        return '...'
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, enum.Enum):
            return {'enum': str(value)}
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {type(value).__name__: bytes(value).hex()}
    if isinstance(value, (Decimal, datetime)):
        return {type(value).__name__: str(value)}
    if isinstance(value, dict):
        return {str(k): describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(
            value, (set, frozenset)) else value
        return [describe(v, depth + 1) for v in items]
    if isinstance(value, amqp.Message):
        return {'Message': describe(value.body, depth + 1),
                'properties': describe(value.properties, depth + 1)}
    return {'type': type(value).__name__}


def raised(exc):
    out = {'raised': type(exc).__name__}
    if isinstance(exc, amqp.AMQPError):
        out.update(reply_code=exc.reply_code, reply_text=str(exc.reply_text),
                   method_sig=describe(exc.method_sig),
                   channel_error=isinstance(exc, amqp.ChannelError),
                   connection_error=isinstance(exc, amqp.ConnectionError),
                   recoverable=isinstance(exc, (
                       amqp.RecoverableChannelError,
                       amqp.RecoverableConnectionError)))
    return out


def outcome(fun, *args, **kwargs):
    """Call ``fun``; its described return value, or what it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return {'returned': describe(fun(*args, **kwargs))}
    except Exception as exc:
        return raised(exc)


def connect(name, **kwargs):
    conn = amqp.Connection(FAKE, virtual_host='%s/%s' % (LABEL, name),
                           connect_timeout=TIMEOUT, **kwargs)
    conn.connect()
    return conn


def close_quietly(conn):
    try:
        conn.close()
    except Exception:
        pass


# -- module-level names -----------------------------------------------------

#: Names real code imports from py-amqp (its __all__ lists plus what
#: celery, kombu, nameko and user code reach for).
NAMES = {
    'amqp': ('Connection', 'Channel', 'Message', 'promise', 'AMQPError',
             'ConnectionError', 'RecoverableConnectionError',
             'IrrecoverableConnectionError', 'ChannelError',
             'RecoverableChannelError', 'IrrecoverableChannelError',
             'ConsumerCancelled', 'ContentTooLarge', 'NoConsumers',
             'ConnectionForced', 'InvalidPath', 'AccessRefused', 'NotFound',
             'ResourceLocked', 'PreconditionFailed', 'FrameError',
             'FrameSyntaxError', 'InvalidCommand', 'ChannelNotOpen',
             'UnexpectedFrame', 'ResourceError', 'NotAllowed',
             'AMQPNotImplementedError', 'InternalError', 'error_for_code',
             'VERSION', 'version_info', 'version_info_t', '__version__',
             'utils', 'platform', 'transport', 'connection', 'channel',
             'exceptions', 'spec', 'serialization', 'basic_message',
             'method_framing', 'abstract_channel', 'sasl', 'protocol'),
    'amqp.utils': ('str_to_bytes', 'bytes_to_str', 'get_logger',
                   'set_cloexec', 'promise', 'coro', 'NullHandler'),
    'amqp.platform': ('KNOWN_TCP_OPTS', 'SOL_TCP', 'LINUX_VERSION',
                      '_linux_version_to_tuple'),
    'amqp.transport': ('Transport', 'TCPTransport', 'SSLTransport',
                       'to_host_port', 'AMQP_PORT', 'EMPTY_BUFFER',
                       'IPV6_LITERAL', 'AMQP_PROTOCOL_HEADER',
                       'DEFAULT_SOCKET_SETTINGS', 'KNOWN_TCP_OPTS', 'SOL_TCP',
                       'SIGNED_INT_MAX', 'set_cloexec', 'SSLError'),
    'amqp.connection': ('Connection', 'LIBRARY_PROPERTIES',
                        'NEGOTIATE_CAPABILITIES', 'AMQP_LOGGER',
                        'AMQP_HEARTBEAT_LOGGER', 'SSLError', 'Channel',
                        'frame_handler', 'frame_writer'),
    'amqp.channel': ('Channel', 'AMQP_LOGGER', 'queue_declare_ok_t'),
    'amqp.exceptions': ('AMQPDeprecationWarning', 'MessageNacked', 'Blocked',
                        'ERROR_MAP', 'METHOD_NAME_MAP', 'error_for_code'),
    'amqp.basic_message': ('Message',),
    'amqp.protocol': ('queue_declare_ok_t', 'basic_return_t'),
    'amqp.spec': ('Basic', 'Channel', 'Confirm', 'Connection', 'Exchange',
                  'Queue', 'Tx', 'method', 'method_t'),
    'amqp.serialization': ('dumps', 'loads', 'decode_properties_basic'),
    'amqp.sasl': ('SASL', 'PLAIN', 'AMQPLAIN', 'EXTERNAL', 'GSSAPI', 'RAW'),
    'amqp.method_framing': ('frame_handler', 'frame_writer'),
}


@scenario
def module_names():
    import importlib
    out = {}
    for module, names in NAMES.items():
        mod = importlib.import_module(module)
        out[module] = sorted(n for n in names if not hasattr(mod, n))
    return {'missing': out}


@scenario
def compat_values():
    from amqp import connection, platform, utils
    out = {
        'KNOWN_TCP_OPTS': sorted(platform.KNOWN_TCP_OPTS),
        'LINUX_VERSION': describe(platform.LINUX_VERSION),
        'SOL_TCP': platform.SOL_TCP,
        'str_to_bytes': describe(utils.str_to_bytes('a\u20ac\ud800')),
        'bytes_to_str': utils.bytes_to_str(b'a\xe2\x82\xac'),
        'pass_through': describe([utils.str_to_bytes(5),
                                  utils.bytes_to_str(None)]),
        'get_logger': [type(h).__name__ for h in utils.get_logger(
            'amqp.diff.%s' % LABEL).handlers],
        'coro': outcome(lambda: utils.coro(_echo)().send('x')),
        'heartbeat_logger': connection.AMQP_HEARTBEAT_LOGGER.name,
        'negotiate_capabilities_asked': sorted(
            k for k, v in connection.NEGOTIATE_CAPABILITIES.items() if v),
        'library_properties': describe(connection.LIBRARY_PROPERTIES),
    }
    from amqp import transport
    for name in ('DEFAULT_SOCKET_SETTINGS', 'AMQP_PROTOCOL_HEADER',
                 'SIGNED_INT_MAX', 'AMQP_PORT'):
        out['transport.' + name] = describe(getattr(transport, name, None))
    return out


def _echo():
    while True:
        got = yield
        yield got


# -- exceptions -------------------------------------------------------------

@scenario
def exceptions():
    from amqp import exceptions as e
    out = {}
    for name in ('AMQPError', 'ConnectionError', 'ChannelError',
                 'RecoverableConnectionError', 'IrrecoverableConnectionError',
                 'RecoverableChannelError', 'IrrecoverableChannelError',
                 'ConsumerCancelled', 'ContentTooLarge', 'NoConsumers',
                 'ConnectionForced', 'InvalidPath', 'AccessRefused',
                 'NotFound', 'ResourceLocked', 'PreconditionFailed',
                 'FrameError', 'FrameSyntaxError', 'InvalidCommand',
                 'ChannelNotOpen', 'UnexpectedFrame', 'ResourceError',
                 'NotAllowed', 'AMQPNotImplementedError', 'InternalError',
                 'MessageNacked', 'Blocked'):
        cls = getattr(e, name)
        info = {'bases': [b.__name__ for b in cls.__bases__]}
        if issubclass(cls, e.AMQPError):
            exc = cls('text', (50, 10))
            info.update(code=exc.reply_code, str=str(exc),
                        method_name=exc.method_name,
                        pickled=str(pickle.loads(pickle.dumps(exc))))
        out[name] = info
    out['error_for_code'] = {
        code: raised(e.error_for_code(code, 'text', (60, 40),
                                      e.ChannelError))
        for code in (200, 311, 312, 313, 320, 402, 403, 404, 405, 406, 501,
                     502, 503, 504, 505, 506, 530, 540, 541, 999)}
    return out


# -- Message ----------------------------------------------------------------

PROPS = {'content_type': 'application/json', 'content_encoding': 'utf-8',
         'application_headers': {'a': 1, 's': 'x', 'n': None,
                                 'l': [1, 'b'], 'f': 1.5, 't': True},
         'delivery_mode': 2, 'priority': 5, 'correlation_id': 'c',
         'reply_to': 'r', 'expiration': '60000', 'message_id': 'm',
         'timestamp': 1700000000, 'type': 'task', 'user_id': 'guest',
         'app_id': 'app', 'cluster_id': 'cl'}


class RawHeaders(amqp.Message):
    """py-amqp's own tests publish raw 's'/'b' table types this way."""

    def _serialize_properties(self):
        table = b'\x01as\x00\x07' b'\x01bb\xfe'
        return b'\x20\x00' + len(table).to_bytes(4, 'big') + table


@scenario
def message_surface():
    m = amqp.Message(b'body', **PROPS)
    other = amqp.Message(b'body', **PROPS)
    out = {
        'hash_is_stable': outcome(lambda: hash(m) == hash(m)),
        'set_of_two_equal': outcome(lambda: len({m, other})),
        'eq_same': m == m, 'eq_equal_value': m == other,
        'ready': m.ready, 'body_received': m.body_received,
        'body_size': m.body_size, 'delivery_info': m.delivery_info,
        'channel': describe(m.channel), 'headers': describe(m.headers),
        'content_type': m.content_type,
        'frame_method': describe(m.frame_method),
        'missing_property': outcome(lambda: amqp.Message().priority),
        'set_attribute': outcome(lambda: setattr(m, 'custom', 7) or
                                 m.custom),
        'serialize': describe(m._serialize_properties()),
        'serialize_empty': describe(amqp.Message()._serialize_properties()),
        'serialize_subclass': describe(RawHeaders()._serialize_properties()),
        'delivery_tag_unreceived': outcome(lambda: amqp.Message()
                                           .delivery_tag),
        'children_positional': outcome(lambda: amqp.Message(
            b'b', None, None, priority=1).properties),
        'str_body': outcome(lambda: amqp.Message('text').body),
        'properties_table': describe([list(p) for p in
                                      amqp.Message.PROPERTIES]),
        'CLASS_ID': amqp.Message.CLASS_ID,
    }
    raw = m._serialize_properties()
    loaded = amqp.Message()
    out['load_properties'] = outcome(loaded._load_properties, 60,
                                     b'xx' + raw, 2)
    out['loaded'] = describe(loaded.properties)
    inbound = amqp.Message()
    header = b'\x00\x3c\x00\x00' + (5).to_bytes(8, 'big') + raw
    out['inbound_header'] = outcome(inbound.inbound_header, header)
    out['after_header'] = [inbound.ready, inbound.body_size,
                           inbound.body_received, inbound.content_type]
    out['inbound_body_1'] = outcome(inbound.inbound_body, b'ab')
    out['after_body_1'] = [inbound.ready, inbound.body_received]
    out['inbound_body_2'] = outcome(inbound.inbound_body, b'cde')
    out['after_body_2'] = [inbound.ready, inbound.body_received,
                           describe(inbound.body)]
    empty = amqp.Message()
    empty.inbound_header(b'\x00\x3c\x00\x00' + bytes(8) + b'\x00\x00')
    out['empty_ready'] = empty.ready
    clone = pickle.loads(pickle.dumps(m))
    out['pickled'] = [describe(clone.body), describe(clone.properties),
                      getattr(clone, 'custom', None)]
    return out


# -- wire encoding ----------------------------------------------------------

class _IntE(enum.IntEnum):
    A = 5


class _StrE(str, enum.Enum):
    A = 'a'


class _MyBytes(bytes):
    pass


TABLE_VALUES = {
    'str': 'text', 'empty': '', 'unicode': '\u017c\u00f3\u0142w',
    'escaped_surrogate': '\udc80', 'lone_surrogate': '\ud800',
    'bytes': b'raw', 'bytes_binary': b'\xff\xfe', 'bytes_sub': _MyBytes(b'b'),
    'bytearray': bytearray(b'ba'), 'memoryview': memoryview(b'mv'),
    'true': True, 'false': False, 'zero': 0, 'one': 1, 'minus_one': -1,
    'int32_max': 2 ** 31 - 1, 'int32_min_plus_1': -2 ** 31 + 1,
    'int32_min': -2 ** 31, 'int32_max_plus_1': 2 ** 31,
    'int32_min_minus_1': -2 ** 31 - 1, 'int64_max': 2 ** 63 - 1,
    'int64_min': -2 ** 63, 'int64_max_plus_1': 2 ** 63, 'int_enum': _IntE.A,
    'str_enum': _StrE.A, 'float': 1.5, 'inf': float('inf'),
    'neg_zero': -0.0, 'decimal': Decimal('1.5'),
    'decimal_neg': Decimal('-12.345'), 'decimal_int': Decimal('100'),
    'decimal_exp': Decimal('1E+2'), 'decimal_tiny': Decimal('1e-300'),
    'decimal_nan': Decimal('NaN'), 'decimal_huge': Decimal('99999999999'),
    'naive_datetime': datetime(2024, 1, 2, 3, 4, 5),
    'utc_datetime': datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    'plus2_datetime': datetime(2024, 1, 2, 3, 4, 5,
                               tzinfo=timezone(timedelta(hours=2))),
    'micro_datetime': datetime(2024, 1, 2, 3, 4, 5, 999999),
    'pre_epoch': datetime(1960, 1, 1), 'empty_dict': {}, 'dict': {'a': 1},
    'nested': {'n': {'m': [1, 'x']}}, 'empty_list': [],
    'list': [1, 'a', None, b'x', 2 ** 40], 'tuple': (1, 2), 'none': None,
    'ordered_dict': collections.OrderedDict(a=1), 'set': {1},
    'object': object(), 'complex': 3 + 4j,
}
TABLE_KEYS = {'str': 'k', 'bytes': b'k', 'unicode': '\u043a\u043b',
              'too_long': 'x' * 256, 'int': 1, 'str_enum': _StrE.A}


def _dumps_outcome(fmt, values):
    from amqp.serialization import dumps
    try:
        return dumps(fmt, values).hex()
    except Exception as exc:
        return 'raised ' + ('AMQPError' if isinstance(exc, amqp.AMQPError)
                            else 'TypeError/ValueError'
                            if isinstance(exc, (TypeError, ValueError))
                            else 'other')


@scenario
def table_encoding():
    out = {'value.' + k: _dumps_outcome('F', ({'k': v},))
           for k, v in TABLE_VALUES.items()}
    out.update(('key.' + k, _dumps_outcome('F', ({v: 1},)))
               for k, v in TABLE_KEYS.items())
    out.update(('array.' + k, _dumps_outcome('A', ([v],)))
               for k, v in TABLE_VALUES.items())
    return out


@scenario
def method_encoding():
    from amqp.serialization import loads
    cases = {
        'declare': ('BsbbbbbF', (0, 'q', False, True, False, True, False,
                                 {'x-max-length': 10})),
        'publish': ('Bssbb', (0, 'ex', 'rk', True, False)),
        'ack': ('Lb', (2 ** 40, True)),
        'bits_split': ('bbbbbbbbbb', (True,) * 10),
        'longstr_bytes': ('S', (b'\xff',)),
        'longstr_none': ('S', (None,)),
        'shortstr_none': ('s', (None,)),
        'timestamp': ('T', (datetime(2024, 1, 1),)),
        'array': ('A', ([1, 'x'],)),
        'octet': ('o', (255,)),
        'short_str_arg': ('B', ('5',)),
    }
    out = {k: _dumps_outcome(*v) for k, v in cases.items()}
    for fmt, data in (('sLbss', '0361626300000000000000050103657863037270'
                                '6b'),
                      ('Bsss', '0138024e4f0165027271'),
                      ('F', '0000000a0161530000000378797a')):
        try:
            out['loads.' + fmt] = describe(loads(fmt, bytes.fromhex(data),
                                                 0))
        except Exception as exc:
            out['loads.' + fmt] = raised(exc)
    return out


# -- before connect() -------------------------------------------------------

def _closed_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return '127.0.0.1:%d' % port


@scenario
def before_connect():
    conn = amqp.Connection(_closed_port(), connect_timeout=1)
    out = {
        'connected': describe(conn.connected),
        'channels': describe(conn.channels),
        'server_properties': describe(conn.server_properties),
        'heartbeat': describe(conn.heartbeat),
        'client_heartbeat': describe(conn.client_heartbeat),
        'channel_max': conn.channel_max, 'frame_max': conn.frame_max,
        'mechanisms': describe(conn.mechanisms),
        'is_alive': outcome(conn.is_alive),
    }
    for name in ('transport', 'frame_writer', 'on_inbound_frame', 'sock'):
        out['attr.' + name] = outcome(getattr, conn, name)
    for name, args in (('channel', ()), ('drain_events', (0,)),
                       ('send_heartbeat', ()), ('heartbeat_tick', ()),
                       ('blocking_read', (0,)), ('close', ()),
                       ('collect', ())):
        conn = amqp.Connection(_closed_port(), connect_timeout=1)
        out['call.' + name] = outcome(getattr(conn, name), *args)
    return out


# -- against the fake broker ------------------------------------------------

@scenario
def channel_methods():
    conn = connect('channel_methods')
    out = {}
    ch = conn.channel()
    out['is_open'] = ch.is_open
    out['channel_id'] = ch.channel_id
    out['returned_messages'] = type(ch.returned_messages).__name__
    out['returned_empty'] = outcome(ch.returned_messages.get_nowait)
    calls = [
        ('exchange_declare', ('ex', 'direct'), {'durable': True}),
        ('exchange_declare', ('ex2', 'topic'), {'nowait': True,
                                                 'arguments': {'a': 1}}),
        ('queue_declare', ('q',), {'arguments': {'x-max-length': 5}}),
        ('queue_declare', ('',), {'exclusive': True}),
        ('queue_bind', ('q', 'ex', 'rk'), {}),
        ('queue_unbind', ('q', 'ex', 'rk'), {}),
        ('exchange_bind', ('ex2', 'ex', 'rk'), {}),
        ('exchange_unbind', ('ex2', 'ex', 'rk'), {}),
        ('basic_qos', (0, 10, False), {}),
        ('basic_consume', ('q',), {'consumer_tag': 'ctag',
                                   'callback': lambda m: None}),
        ('basic_consume', ('q',), {'no_ack': True}),
        ('basic_cancel', ('ctag',), {}),
        ('basic_publish', (amqp.Message(b'hi', **PROPS),),
         {'exchange': 'ex', 'routing_key': 'rk'}),
        ('basic_publish', (amqp.Message('t\u00e9xt'),), {'routing_key': 'q'}),
        ('basic_publish', (amqp.Message(b''),), {'routing_key': 'q',
                                                 'mandatory': True}),
        ('basic_publish', (RawHeaders(b'raw'),), {'routing_key': 'q'}),
        ('basic_get', ('q',), {}),
        ('basic_ack', (1,), {'multiple': True}),
        ('basic_reject', (2, False), {}),
        ('basic_recover', (), {'requeue': True}),
        ('queue_purge', ('q',), {}),
        ('queue_delete', ('q',), {'if_empty': True}),
        ('exchange_delete', ('ex',), {}),
        ('tx_select', (), {}), ('tx_commit', (), {}), ('tx_rollback', (), {}),
        ('flow', (True,), {}),
        ('basic_recover_async', (False,), {}),
        ('confirm_select', (), {}),
        ('basic_publish', (amqp.Message(b'confirmed'),), {'routing_key': 'q'}),
        ('open', (), {}),
    ]
    for i, (name, args, kwargs) in enumerate(calls):
        out['%02d.%s' % (i, name)] = outcome(getattr(ch, name), *args,
                                             **kwargs)
    out['no_ack_consumers'] = describe(ch.no_ack_consumers)
    out['callbacks'] = sorted(ch.callbacks)
    out['close'] = outcome(ch.close)
    out['after_close'] = [ch.is_open, ch.connection is None,
                          describe(ch.channel_id)]
    out['use_after_close'] = outcome(ch.queue_declare, 'q')
    out['conn_close'] = outcome(conn.close)
    out['conn_after_close'] = [describe(conn.connected),
                               describe(conn.channels)]
    return out


class _RecordingChannel(amqp.Channel):
    calls = []

    def basic_publish_confirm(self, *args, **kwargs):
        self.calls.append({'args': len(args), 'kwargs': sorted(kwargs),
                           'routing_key': kwargs.get('routing_key')})
        return super().basic_publish_confirm(*args, **kwargs)


class _RecordingConnection(amqp.Connection):
    Channel = _RecordingChannel


@scenario
def confirm_publish():
    conn = amqp.Connection(FAKE, virtual_host='%s/confirm_publish' % LABEL,
                           connect_timeout=TIMEOUT, confirm_publish=True)
    conn.__class__ = _RecordingConnection
    _RecordingChannel.calls = []
    conn.connect()
    ch = conn.channel()
    out = {
        'kw': outcome(ch.basic_publish, amqp.Message(b'1'), exchange='',
                      routing_key='q1', mandatory=False),
        'positional': outcome(ch.basic_publish, amqp.Message(b'2'), '',
                              'q2'),
        'timeouts': outcome(ch.basic_publish, amqp.Message(b'3'),
                            routing_key='q3', timeout=2, confirm_timeout=2),
    }
    out['calls'] = _RecordingChannel.calls
    close_quietly(conn)
    return out


@scenario
def never_opened_channel():
    conn = connect('never_opened_channel')
    ch = amqp.Channel(conn)
    out = {'is_open': ch.is_open, 'channel_id': ch.channel_id,
           'declare': outcome(ch.queue_declare, 'q'),
           'connected_after': describe(conn.connected)}
    close_quietly(conn)
    return out


@scenario
def bare_reserved_fields():
    conn = connect('bare_reserved_fields')
    out = {'connected': describe(conn.connected)}
    ch = outcome(conn.channel)
    out['channel'] = ch
    channel = conn.channels.get(1) if conn.channels else None
    if channel is not None:
        out['get_empty'] = outcome(channel.basic_get, 'q')
    close_quietly(conn)
    return out


@scenario
def broker_errors():
    conn = connect('broker_errors')
    ch = conn.channel()
    out = {'passive_404': outcome(ch.queue_declare, 'missing',
                                  passive=True)}
    out['state_after_404'] = [ch.is_open, ch.connection is not None]
    ch2 = conn.channel()
    ch2.events['basic_return'].add(
        lambda exc, exchange, routing_key, message: returns.append(
            [raised(exc), exchange, routing_key, describe(message)]))
    returns = []
    ch2.basic_publish(amqp.Message(b'lost'), routing_key='nowhere',
                      mandatory=True)
    out['return_handled'] = outcome(conn.drain_events, timeout=TIMEOUT)
    out['returns'] = returns
    ch3 = conn.channel()
    ch3.basic_publish(amqp.Message(b'lost'), routing_key='nowhere',
                      mandatory=True)
    out['return_unhandled'] = outcome(conn.drain_events, timeout=TIMEOUT)
    out['after_unhandled_return'] = outcome(ch3.basic_qos, 0, 1, False)
    out['forced_close'] = outcome(ch3.basic_recover)
    out['connected_after'] = describe(conn.connected)
    close_quietly(conn)
    return out


@scenario
def deliveries():
    conn = connect('deliveries')
    ch = conn.channel()
    got = []
    ch.basic_consume('q', consumer_tag='ctag', callback=got.append)
    out = {'drain': outcome(conn.drain_events, timeout=TIMEOUT)}
    out['drain2'] = outcome(conn.drain_events, timeout=TIMEOUT)
    out['messages'] = [{
        'body': describe(m.body), 'properties': describe(m.properties),
        'delivery_info': describe(m.delivery_info),
        'channel_is_ch': m.channel is ch, 'ready': m.ready,
        'body_size': m.body_size, 'body_received': m.body_received,
        'delivery_tag': m.delivery_tag, 'frame_method': describe(
            m.frame_method)} for m in got]
    out['get'] = outcome(lambda: describe(ch.basic_get('q').delivery_info))
    close_quietly(conn)
    return out


# -- against the real broker ------------------------------------------------

@scenario
def real_broker():
    conn = amqp.Connection(BROKER, connect_timeout=TIMEOUT,
                           confirm_publish=True)
    conn.__class__ = _RecordingConnection
    _RecordingChannel.calls = []
    conn.connect()
    out = {}
    ch = conn.channel()
    queue_name = 'diff-%s' % LABEL
    out['declare'] = outcome(lambda: list(ch.queue_declare(
        queue_name, auto_delete=True))[1:])
    out['publish'] = outcome(ch.basic_publish, amqp.Message(
        b'x', application_headers={'b': b'raw', 'big': 2 ** 40}),
        routing_key=queue_name)
    out['calls'] = [dict(call, routing_key=call['routing_key'].replace(
        queue_name, 'QUEUE')) for call in _RecordingChannel.calls]
    msg = ch.basic_get(queue_name, no_ack=True)
    out['headers'] = describe(msg.headers)
    out['message_hash'] = outcome(lambda: len({msg, msg}))
    out['unroutable'] = outcome(ch.basic_publish, amqp.Message(b'y'),
                                routing_key=queue_name + '-nowhere',
                                mandatory=True)
    out['calls_after_unroutable'] = len(_RecordingChannel.calls)
    out['returned_messages'] = outcome(
        conn.channels[ch.channel_id].returned_messages.get_nowait) \
        if conn.channels.get(ch.channel_id) else None
    never = amqp.Channel(conn)
    out['never_opened'] = outcome(never.queue_declare, queue_name)
    out['connected_after'] = describe(conn.connected)
    close_quietly(conn)
    return out


@scenario
def held_acks():
    """A consumer acking 40 deliveries that RabbitMQ sent at once: each
    ack its own TCP segment (py-amqp: 20 to 40 were seen, as Linux's
    autocorking merges some on a busy machine), or held and sent
    together (one or two)."""
    import socket
    import struct
    try:        # (this package: batches longer than its 1 ms default,
        from amqp import reader     # which a loaded machine may reach)
        reader.HOLD_LIMIT = 10.0
    except ImportError:             # (py-amqp)
        pass
    conn = amqp.Connection(BROKER, connect_timeout=TIMEOUT)
    conn.connect()
    ch = conn.channel()
    queue_name = ch.queue_declare('', exclusive=True, auto_delete=False)[0]
    n = 40
    for _ in range(n):
        ch.basic_publish(amqp.Message(b'x'), routing_key=queue_name)
    while ch.queue_declare(queue_name, passive=True)[1] < n:
        time.sleep(0.01)
    got = []

    def on_message(message):
        got.append(message.delivery_tag)
        ch.basic_ack(message.delivery_tag)

    def segments():
        info = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO,
                                    256)
        return struct.unpack_from('=I', info, 156)[0]

    ch.basic_qos(0, n, False)
    ch.basic_consume(queue_name, callback=on_message)
    time.sleep(0.2)                  # all n deliveries are received
    before = segments()
    while len(got) < n:
        conn.drain_events(timeout=TIMEOUT)
    sent = segments() - before
    ch.close()                       # unacked deliveries would be requeued
    ch2 = conn.channel()
    out = {'tags': got,
           'left_after_close': ch2.queue_declare(queue_name,
                                                 passive=True)[1],
           'acks_in_over_5_segments': sent > 5}
    close_quietly(conn)
    return out


def main(label, fake, broker):
    global LABEL, FAKE, BROKER
    LABEL, FAKE, BROKER = label, fake, broker
    results = {}
    for name, fun in SCENARIOS.items():
        try:
            results[name] = fun()
        except Exception as exc:  # a scenario that broke is a difference
            results[name] = {'scenario_failed': raised(exc)}
    print('RESULT:' + json.dumps({'amqp_file': amqp.__file__,
                                  'amqp_version': amqp.__version__,
                                  'results': results}, sort_keys=True))


if __name__ == '__main__':
    main(*sys.argv[1:])
