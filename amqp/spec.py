"""The AMQP 0-9-1 method table, frame constants and reply codes.

This module is the one place where class ids, method ids and argument
signatures appear.  Everything else (serialization, dispatch, the public
``Channel``/``Connection`` API) looks methods up here.

Argument signatures use py-amqp's format letters (see
:mod:`amqp.serialization`): ``b`` bit, ``o`` octet, ``B`` short, ``l`` long,
``L`` longlong, ``s`` shortstr, ``S`` longstr, ``F`` table, ``T`` timestamp.

Reference: AMQP 0-9-1 specification, section 4.2 (wire format) and the
``amqp0-9-1.xml`` method definitions, plus RabbitMQ's protocol extensions
(https://www.rabbitmq.com/docs/extensions).
"""
from __future__ import annotations

from typing import (Dict, FrozenSet, Iterable, NamedTuple, Optional, Tuple,
                    Union)

__all__ = (
    'MethodSpec', 'METHODS', 'METHODS_BY_NAME', 'method_t', 'method',
    'Connection', 'Channel', 'Access', 'Exchange', 'Queue', 'Basic',
    'Confirm', 'Tx', 'BASIC_PROPERTIES', 'MethodSig',
)

#: A method's (class id, method id), as used everywhere a method is named.
MethodSig = Tuple[int, int]

PROTOCOL_HEADER = b'AMQP\x00\x00\x09\x01'

#: Frame types (spec 4.2.3, 2.3.5).
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_TYPES = (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT)
FRAME_END = 0xCE
FRAME_END_BYTE = b'\xce'
#: Size of the frame envelope: type (1) + channel (2) + size (4) + end (1).
FRAME_OVERHEAD = 8
#: A method frame's payload starts with the class id and method id (2 + 2);
#: the arguments follow.
METHOD_ARGS_OFFSET = 4
#: Every peer must accept frames of this size before Tune (spec 4.2.3).
FRAME_MIN_SIZE = 4096
#: What we ask for when the user does not set frame_max (RabbitMQ's default).
FRAME_MAX_DEFAULT = 131072

#: Reply codes (spec 1.9, constants).
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541


class MethodSpec(NamedTuple):
    """One AMQP method: its ids, its name and how its arguments look."""

    class_id: int
    method_id: int
    name: str            # 'basic.publish'
    args: str            # serialization format letters
    arg_names: Tuple[str, ...]
    content: bool        # followed by a content header and body frames
    replies: Tuple[MethodSig, ...]  # synchronous replies, () if none

    @property
    def sig(self) -> MethodSig:
        return (self.class_id, self.method_id)

    @property
    def synchronous(self) -> bool:
        return bool(self.replies)


# (method id, name, format, arg names, content, reply method ids in the
#  same class)
_MethodRow = Tuple[int, str, str, str, bool, Tuple[int, ...]]

# (class id, class name, [(method id, name, format, arg names, content,
#   reply method ids in the same class)])
_TABLE: Tuple[Tuple[int, str, Tuple[_MethodRow, ...]], ...] = (
    (10, 'connection', (
        (10, 'start', 'ooFSS', 'version_major version_minor server_properties'
         ' mechanisms locales', False, (11,)),
        (11, 'start-ok', 'FsSs', 'client_properties mechanism response locale',
         False, ()),
        (20, 'secure', 'S', 'challenge', False, (21,)),
        (21, 'secure-ok', 'S', 'response', False, ()),
        (30, 'tune', 'BlB', 'channel_max frame_max heartbeat', False, (31,)),
        (31, 'tune-ok', 'BlB', 'channel_max frame_max heartbeat', False, ()),
        (40, 'open', 'ssb', 'virtual_host capabilities insist', False, (41,)),
        (41, 'open-ok', 's', 'known_hosts', False, ()),
        (50, 'close', 'BsBB', 'reply_code reply_text class_id method_id',
         False, (51,)),
        (51, 'close-ok', '', '', False, ()),
        # RabbitMQ extensions.
        (60, 'blocked', 's', 'reason', False, ()),
        (61, 'unblocked', '', '', False, ()),
        (70, 'update-secret', 'Ss', 'new_secret reason', False, (71,)),
        (71, 'update-secret-ok', '', '', False, ()),
    )),
    (20, 'channel', (
        (10, 'open', 's', 'out_of_band', False, (11,)),
        (11, 'open-ok', 'S', 'channel_id', False, ()),
        (20, 'flow', 'b', 'active', False, (21,)),
        (21, 'flow-ok', 'b', 'active', False, ()),
        (40, 'close', 'BsBB', 'reply_code reply_text class_id method_id',
         False, (41,)),
        (41, 'close-ok', '', '', False, ()),
    )),
    (30, 'access', (  # deprecated; RabbitMQ still answers it
        (10, 'request', 'sbbbbb', 'realm exclusive passive active write read',
         False, (11,)),
        (11, 'request-ok', 'B', 'ticket', False, ()),
    )),
    (40, 'exchange', (
        (10, 'declare', 'BssbbbbbF', 'ticket exchange type passive durable'
         ' auto_delete internal nowait arguments', False, (11,)),
        (11, 'declare-ok', '', '', False, ()),
        (20, 'delete', 'Bsbb', 'ticket exchange if_unused nowait', False,
         (21,)),
        (21, 'delete-ok', '', '', False, ()),
        # RabbitMQ extension: exchange-to-exchange bindings.
        (30, 'bind', 'BsssbF', 'ticket destination source routing_key nowait'
         ' arguments', False, (31,)),
        (31, 'bind-ok', '', '', False, ()),
        (40, 'unbind', 'BsssbF', 'ticket destination source routing_key'
         ' nowait arguments', False, (51,)),
        (51, 'unbind-ok', '', '', False, ()),
    )),
    (50, 'queue', (
        (10, 'declare', 'BsbbbbbF', 'ticket queue passive durable exclusive'
         ' auto_delete nowait arguments', False, (11,)),
        (11, 'declare-ok', 'sll', 'queue message_count consumer_count', False,
         ()),
        (20, 'bind', 'BsssbF', 'ticket queue exchange routing_key nowait'
         ' arguments', False, (21,)),
        (21, 'bind-ok', '', '', False, ()),
        (30, 'purge', 'Bsb', 'ticket queue nowait', False, (31,)),
        (31, 'purge-ok', 'l', 'message_count', False, ()),
        (40, 'delete', 'Bsbbb', 'ticket queue if_unused if_empty nowait',
         False, (41,)),
        (41, 'delete-ok', 'l', 'message_count', False, ()),
        (50, 'unbind', 'BsssF', 'ticket queue exchange routing_key arguments',
         False, (51,)),
        (51, 'unbind-ok', '', '', False, ()),
    )),
    (60, 'basic', (
        (10, 'qos', 'lBb', 'prefetch_size prefetch_count a_global', False,
         (11,)),
        (11, 'qos-ok', '', '', False, ()),
        (20, 'consume', 'BssbbbbF', 'ticket queue consumer_tag no_local no_ack'
         ' exclusive nowait arguments', False, (21,)),
        (21, 'consume-ok', 's', 'consumer_tag', False, ()),
        (30, 'cancel', 'sb', 'consumer_tag nowait', False, (31,)),
        (31, 'cancel-ok', 's', 'consumer_tag', False, ()),
        (40, 'publish', 'Bssbb', 'ticket exchange routing_key mandatory'
         ' immediate', True, ()),
        (50, 'return', 'Bsss', 'reply_code reply_text exchange routing_key',
         True, ()),
        (60, 'deliver', 'sLbss', 'consumer_tag delivery_tag redelivered'
         ' exchange routing_key', True, ()),
        (70, 'get', 'Bsb', 'ticket queue no_ack', False, (71, 72)),
        (71, 'get-ok', 'Lbssl', 'delivery_tag redelivered exchange routing_key'
         ' message_count', True, ()),
        (72, 'get-empty', 's', 'cluster_id', False, ()),
        (80, 'ack', 'Lb', 'delivery_tag multiple', False, ()),
        (90, 'reject', 'Lb', 'delivery_tag requeue', False, ()),
        (100, 'recover-async', 'b', 'requeue', False, ()),
        (110, 'recover', 'b', 'requeue', False, (111,)),
        (111, 'recover-ok', '', '', False, ()),
        # RabbitMQ extension.
        (120, 'nack', 'Lbb', 'delivery_tag multiple requeue', False, ()),
    )),
    # RabbitMQ extension: publisher confirms.
    (85, 'confirm', (
        (10, 'select', 'b', 'nowait', False, (11,)),
        (11, 'select-ok', '', '', False, ()),
    )),
    (90, 'tx', (
        (10, 'select', '', '', False, (11,)),
        (11, 'select-ok', '', '', False, ()),
        (20, 'commit', '', '', False, (21,)),
        (21, 'commit-ok', '', '', False, ()),
        (30, 'rollback', '', '', False, (31,)),
        (31, 'rollback-ok', '', '', False, ()),
    )),
)

#: (class_id, method_id) -> MethodSpec
METHODS: Dict[MethodSig, MethodSpec] = {}
#: 'basic.publish' -> MethodSpec
METHODS_BY_NAME: Dict[str, MethodSpec] = {}
#: class id -> class name
CLASS_NAMES: Dict[int, str] = {}


# py-amqp style constants: spec.Basic.Publish == (60, 40).  The classes
# only declare the names (so that type checkers know them); the values come
# from _TABLE, and _build() refuses a name missing on either side.

class Connection:
    """AMQP connection class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Start: MethodSig
    StartOk: MethodSig
    Secure: MethodSig
    SecureOk: MethodSig
    Tune: MethodSig
    TuneOk: MethodSig
    Open: MethodSig
    OpenOk: MethodSig
    Close: MethodSig
    CloseOk: MethodSig
    Blocked: MethodSig
    Unblocked: MethodSig
    UpdateSecret: MethodSig
    UpdateSecretOk: MethodSig


class Channel:
    """AMQP channel class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Open: MethodSig
    OpenOk: MethodSig
    Flow: MethodSig
    FlowOk: MethodSig
    Close: MethodSig
    CloseOk: MethodSig


class Access:
    """AMQP access class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Request: MethodSig
    RequestOk: MethodSig


class Exchange:
    """AMQP exchange class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Declare: MethodSig
    DeclareOk: MethodSig
    Delete: MethodSig
    DeleteOk: MethodSig
    Bind: MethodSig
    BindOk: MethodSig
    Unbind: MethodSig
    UnbindOk: MethodSig


class Queue:
    """AMQP queue class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Declare: MethodSig
    DeclareOk: MethodSig
    Bind: MethodSig
    BindOk: MethodSig
    Purge: MethodSig
    PurgeOk: MethodSig
    Delete: MethodSig
    DeleteOk: MethodSig
    Unbind: MethodSig
    UnbindOk: MethodSig


class Basic:
    """AMQP basic class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Qos: MethodSig
    QosOk: MethodSig
    Consume: MethodSig
    ConsumeOk: MethodSig
    Cancel: MethodSig
    CancelOk: MethodSig
    Publish: MethodSig
    Return: MethodSig
    Deliver: MethodSig
    Get: MethodSig
    GetOk: MethodSig
    GetEmpty: MethodSig
    Ack: MethodSig
    Reject: MethodSig
    RecoverAsync: MethodSig
    Recover: MethodSig
    RecoverOk: MethodSig
    Nack: MethodSig


class Confirm:
    """AMQP confirm class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Select: MethodSig
    SelectOk: MethodSig


class Tx:
    """AMQP tx class method signatures."""

    __slots__ = ()
    CLASS_ID: int
    Select: MethodSig
    SelectOk: MethodSig
    Commit: MethodSig
    CommitOk: MethodSig
    Rollback: MethodSig
    RollbackOk: MethodSig


def _camel(name: str) -> str:
    return ''.join(part.capitalize() for part in name.split('-'))


def _build() -> None:
    classes = {cls.__name__: cls for cls in (
        Connection, Channel, Access, Exchange, Queue, Basic, Confirm, Tx)}
    for class_id, class_name, methods in _TABLE:
        CLASS_NAMES[class_id] = class_name
        cls = classes.pop(_camel(class_name))
        values: Dict[str, Union[int, MethodSig]] = {'CLASS_ID': class_id}
        for method_id, name, fmt, arg_names, content, replies in methods:
            m = MethodSpec(class_id, method_id, '%s.%s' % (class_name, name),
                           fmt, tuple(arg_names.split()), content,
                           tuple((class_id, r) for r in replies))
            assert len(m.arg_names) == len(fmt), m
            # one tuple object per signature, the key here and the
            # constant (spec.Basic.Ack ...): lookups and ``in`` tests of
            # the signatures the parser hands out (the same objects, see
            # method_framing) find them by identity
            sig = m.sig
            METHODS[sig] = METHODS_BY_NAME[m.name] = m
            values[_camel(name)] = sig
        if set(values) != set(cls.__annotations__):
            raise AssertionError('spec.%s declares %s; the table has %s' % (
                cls.__name__, sorted(cls.__annotations__), sorted(values)))
        for attr, value in values.items():
            setattr(cls, attr, value)
    if classes:
        raise AssertionError('no table entries for %s' % sorted(classes))


_build()

#: Fields the AMQP 0-9-1 XML names ``reserved-N`` (deprecated, carried
#: only for the wire layout), by method name.
RESERVED_FIELDS = {
    'connection.open': ('capabilities', 'insist'),
    'connection.open-ok': ('known_hosts',),
    'channel.open': ('out_of_band',),
    'channel.open-ok': ('channel_id',),
    'exchange.declare': ('ticket', 'auto_delete', 'internal'),
    'exchange.delete': ('ticket',),
    'exchange.bind': ('ticket',),
    'exchange.unbind': ('ticket',),
    'queue.declare': ('ticket',),
    'queue.bind': ('ticket',),
    'queue.purge': ('ticket',),
    'queue.delete': ('ticket',),
    'queue.unbind': ('ticket',),
    'basic.consume': ('ticket',),
    'basic.publish': ('ticket',),
    'basic.get': ('ticket',),
    'basic.get-empty': ('cluster_id',),
}


def _trailing_reserved() -> Dict[MethodSig, int]:
    out: Dict[MethodSig, int] = {}
    for name, fields in RESERVED_FIELDS.items():
        m = METHODS_BY_NAME[name]
        n = 0
        while n < len(m.arg_names) and m.arg_names[-1 - n] in fields:
            n += 1
        if n:
            out[m.sig] = n
    return out


#: method signature -> how many of its last fields are reserved.  A peer
#: may leave those out (some brokers send connection.open-ok, channel.open-ok
#: or basic.get-empty bare); py-amqp accepts that, and so do we.
TRAILING_RESERVED = _trailing_reserved()

#: Methods whose arrival carries content (header + body frames follow).
CONTENT_METHODS: FrozenSet[MethodSig] = frozenset(
    sig for sig, m in METHODS.items() if m.content)

#: Basic content properties, in flag order (spec 1.8, class basic fields):
#: (name, format letter).
BASIC_PROPERTIES: Tuple[Tuple[str, str], ...] = (
    ('content_type', 's'),
    ('content_encoding', 's'),
    ('application_headers', 'F'),
    ('delivery_mode', 'o'),
    ('priority', 'o'),
    ('correlation_id', 's'),
    ('reply_to', 's'),
    ('expiration', 's'),
    ('message_id', 's'),
    ('timestamp', 'T'),
    ('type', 's'),
    ('user_id', 's'),
    ('app_id', 's'),
    ('cluster_id', 's'),
)

class method_t(NamedTuple):
    """py-amqp compatibility: a method to send, as a tuple."""

    method_sig: MethodSig
    args: Optional[str]
    content: bool


def method(method_sig: MethodSig, args: Optional[str] = None,
           content: bool = False) -> method_t:
    """Create a :class:`method_t` (py-amqp compatible helper)."""
    return method_t(method_sig, args, content)


def args_of(method_sig: MethodSig) -> str:
    """The argument format of method ``method_sig`` (``'Bssbb'`` for
    basic.publish): what callers pass to the encoder, from this table."""
    return METHODS[method_sig].args


def method_name(method_sig: Optional[Iterable[int]]) -> Optional[str]:
    """Return ``'basic.publish'`` style name for a signature, or None."""
    if not method_sig:
        return None
    sig = tuple(method_sig)
    m = METHODS.get(sig) if len(sig) == 2 else None
    return m.name if m else None
