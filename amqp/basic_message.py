"""The AMQP message, as py-amqp's ``amqp.basic_message.Message``."""
from __future__ import annotations

import struct
import typing
from typing import (TYPE_CHECKING, Any, Callable, Dict, Generic, List,
                    Optional, Protocol, Tuple, TypedDict, Union, overload)

from . import spec
from .exceptions import FrameSyntaxError
from .serialization import (Buffer, EncodableValue, decode_properties_basic,
                            encode_properties_basic)

__all__ = ('Message', 'Body', 'OutboundBody', 'Properties', 'DeliveryInfo',
           'MessageChannel')

#: What a message's body may be when it is published (a ``str`` is encoded
#: with ``content_encoding``; None publishes an empty body).
OutboundBody = Union[bytes, bytearray, memoryview, str, None]

if TYPE_CHECKING:
    # A TypeVar default (PEP 696) makes a bare ``Message`` annotation mean
    # ``Message[Union[bytes, str]]`` (what a received message holds), so
    # users' ``--strict`` code need not spell a type argument.  Only type
    # checkers read typing_extensions here (typeshed ships it): at run time
    # the plain TypeVar below is used and nothing new is imported.
    from typing_extensions import TypeVar
    Body = TypeVar('Body', bound=OutboundBody, covariant=True,
                   default=Union[bytes, str])
else:
    Body = typing.TypeVar('Body', bound=OutboundBody, covariant=True)
# Body: the type of Message.body: bytes, or str when auto-decoded, for a
# received message; what the caller gave for one built to be published.

#: :attr:`Message.properties`: the basic content properties by name.  Any
#: encodable value may be stored, so a received message's dict (decoded
#: values only) has this type too.
Properties = Dict[str, EncodableValue]


class DeliveryInfo(TypedDict, total=False):
    """:attr:`Message.delivery_info` of a received message (``consumer_tag``
    for a delivery, ``message_count`` for basic.get)."""

    consumer_tag: str
    delivery_tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    message_count: int


class MessageChannel(Protocol):
    """What :meth:`Message.ack`, :meth:`~Message.reject` and
    :meth:`~Message.nack` call on :attr:`Message.channel` (a
    :class:`~amqp.channel.Channel` for a received message)."""

    def basic_ack(self, delivery_tag: Optional[int],
                  multiple: bool = ...) -> object:
        """Acknowledge (basic.ack)."""

    def basic_reject(self, delivery_tag: Optional[int],
                     requeue: bool) -> object:
        """Reject (basic.reject)."""

    def basic_nack(self, delivery_tag: Optional[int], multiple: bool = ...,
                   requeue: bool = ...) -> object:
        """Negatively acknowledge (basic.nack)."""

# content header frame payload: class id, weight (skipped), body size
_HEADER_PREFIX = struct.Struct('>HxxQ')


class Message(Generic[Body]):
    """A message to publish, or one received from the broker.

    ``Message(body='', children=None, channel=None, **properties)``.

    ``properties`` are the 14 basic content properties (``content_type``,
    ``content_encoding``, ``application_headers``, ``delivery_mode``,
    ``priority``, ``correlation_id``, ``reply_to``, ``expiration``,
    ``message_id``, ``timestamp``, ``type``, ``user_id``, ``app_id``,
    ``cluster_id``); each is also readable as an attribute.  A ``str`` body
    is encoded with ``content_encoding`` (UTF-8 when unset, which then sets
    ``content_encoding='utf-8'``) when it is published.

    Received messages carry ``delivery_info`` (consumer_tag, delivery_tag,
    redelivered, exchange, routing_key; message_count for basic.get) and
    ``channel``.  Like py-amqp's, a message is hashable and compares by
    identity, and takes attributes of the caller's own (kombu and celery
    set some).  Spec: AMQP 0-9-1 section 1.8 (class basic).

    For type checkers the class is generic in the type of :attr:`body`:
    ``Message(b'...')`` is a ``Message[bytes]``, and a bare ``Message`` (a
    received one) means ``Message[Union[bytes, str]]``.
    """

    # '__dict__' for the caller's own attributes (py-amqp allows them); it
    # is only created when one is set, so messages that never get one pay
    # nothing.  py-amqp's content state (ready, body_received,
    # _pending_chunks) lives in slots left unset until inbound_header /
    # inbound_body set them: __getattr__ derives them meanwhile, so the
    # deliver path does not initialise three more slots per message.
    __slots__ = ('body', 'properties', 'delivery_info', 'channel',
                 'frame_method', 'frame_args', 'body_size', 'ready',
                 'body_received', '_pending_chunks', '__dict__',
                 '__weakref__')

    # The slots, for type checkers (annotations only: no class attribute).
    body: Body
    properties: Properties
    delivery_info: Optional[DeliveryInfo]
    channel: Optional[MessageChannel]
    #: method signature and whole method frame payload of a received
    #: message (None for one built by the caller)
    frame_method: Optional[spec.MethodSig]
    frame_args: Optional[bytes]
    body_size: int
    ready: bool
    body_received: int
    _pending_chunks: List[bytes]

    CLASS_ID = 60
    #: (name, format letter) of each basic property, in flag order.
    PROPERTIES = spec.BASIC_PROPERTIES

    # Message() holds '', hence Message[str]; with a body, the body's type.
    @overload
    def __init__(self: Message[str], body: str = '',
                 children: object = None,
                 channel: Optional[MessageChannel] = None,
                 **properties: EncodableValue) -> None: ...

    @overload
    def __init__(self, body: Body, children: object = None,
                 channel: Optional[MessageChannel] = None,
                 **properties: EncodableValue) -> None: ...

    def __init__(self, body: OutboundBody = '', children: object = None,
                 channel: Optional[MessageChannel] = None,
                 **properties: EncodableValue) -> None:
        # The overloads tie body to Body; the implementation cannot.
        self.body = body  # type: ignore[assignment]
        self.properties = properties
        self.channel = channel
        self.delivery_info = None
        self.frame_method = None
        self.frame_args = None
        self.body_size = 0

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed.  Properties read as
        # attributes (msg.content_type), as in py-amqp.
        if name in _CONTENT_STATE:
            return _CONTENT_STATE[name](self)
        if name.startswith('__') or name in _SLOTS:
            raise AttributeError(name)
        try:
            return self.properties[name]
        except (KeyError, AttributeError):
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        # Delivery info, the properties that are set and a body preview.
        parts = ['<Message']
        info = self.delivery_info
        if info:
            for key in ('delivery_tag', 'exchange', 'routing_key',
                        'redelivered', 'consumer_tag', 'message_count'):
                if key in info:
                    parts.append('%s=%r' % (key, info[key]))
        for name, value in (self.properties or {}).items():
            if value is not None:
                text = repr(value)
                if len(text) > 60:
                    text = text[:57] + '...'
                parts.append('%s=%s' % (name, text))
        body = self.body
        if body is None:
            parts.append('body=None')
        else:
            size = len(body)
            if size > 40:
                parts.append('body=%r... (%d %s)' % (
                    body[:40], size,
                    'characters' if isinstance(body, str) else 'bytes'))
            else:
                parts.append('body=%r' % (body,))
        return ' '.join(parts) + '>'

    def __getstate__(self) -> Dict[str, object]:
        state: Dict[str, object] = {
            'body': self.body, 'properties': self.properties,
            'delivery_info': self.delivery_info}
        extra = self.__dict__
        if extra:
            state['attributes'] = dict(extra)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        # state is what __getstate__ returned (pickle gives it back)
        self.__init__(state['body'],  # type: ignore[misc]
                      **state['properties'])
        self.delivery_info = state['delivery_info']
        self.__dict__.update(state.get('attributes') or ())

    # -- py-amqp's content surface (GenericContent) ------------------------
    def _load_properties(self, class_id: int, buf: Buffer,
                         offset: int) -> int:
        """Decode a content header's property flags and list from ``buf``
        at ``offset`` into :attr:`properties`; return the offset after
        them.  Only class basic (60) has content properties."""
        if class_id != spec.Basic.CLASS_ID:
            raise FrameSyntaxError(
                'content properties for class %r; only basic (60) has '
                'them' % (class_id,))
        self.properties, offset = decode_properties_basic(buf, offset)
        return offset

    def _serialize_properties(self) -> Union[bytes, bytearray]:
        """Property flags and property list of :attr:`properties`, as they
        go in a content header frame.

        A subclass may override it: its bytes are then published as they
        are (py-amqp's own tests send raw table types this way).
        """
        return encode_properties_basic(self.properties)

    def inbound_header(self: Message[Union[bytes, str]], buf: Buffer,
                       offset: int = 0) -> int:
        """Take a content header frame payload: body size and properties.

        Returns the offset of the property flags (past class id, weight and
        body size), as py-amqp does.  A message without a body is
        :attr:`ready` at once.
        """
        try:
            class_id, self.body_size = _HEADER_PREFIX.unpack_from(buf, offset)
        except struct.error:
            raise FrameSyntaxError('content header shorter than 12 '
                                   'bytes') from None
        offset += 12
        self._load_properties(class_id, buf, offset)
        self.body_received = 0
        self.ready = not self.body_size
        return offset

    def inbound_body(self: Message[Union[bytes, str]],
                     buf: bytes) -> None:
        """Take one content body frame; the message is :attr:`ready` once
        ``body_size`` bytes have come."""
        received = self.body_received + len(buf)
        self.body_received = received
        chunks = self._pending_chunks
        if received >= self.body_size:
            if chunks:
                chunks.append(buf)
                self.body = b''.join(chunks)
                chunks.clear()
            else:
                self.body = buf
            self.ready = True
        else:
            chunks.append(buf)

    @property
    def headers(self) -> EncodableValue:
        """The ``application_headers`` property (None when unset)."""
        return self.properties.get('application_headers')

    @property
    def application_headers(self) -> EncodableValue:
        """The ``application_headers`` property (None when unset)."""
        return self.properties.get('application_headers')

    @property
    def delivery_tag(self) -> Optional[int]:
        """Delivery tag of a received message (None when not received)."""
        info = self.delivery_info
        return info.get('delivery_tag') if info else None

    def _channel_for(self, action: str) -> Tuple[MessageChannel, int]:
        """The channel and delivery tag to settle this message with."""
        channel = self.channel
        tag = self.delivery_tag
        if channel is None or tag is None:
            raise ValueError('cannot %s a message that was not received '
                             'from a channel' % action)
        return channel, tag

    def ack(self, multiple: bool = False) -> None:
        """Acknowledge this message on the channel it came from."""
        channel, tag = self._channel_for('ack')
        channel.basic_ack(tag, multiple)

    def reject(self, requeue: bool = False) -> None:
        """Reject this message (basic.reject)."""
        channel, tag = self._channel_for('reject')
        channel.basic_reject(tag, requeue)

    def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        """Negatively acknowledge this message (basic.nack)."""
        channel, tag = self._channel_for('nack')
        channel.basic_nack(tag, multiple, requeue)


def _pending_chunks(msg: Message[Any]) -> List[bytes]:
    chunks: List[bytes] = []
    msg._pending_chunks = chunks
    return chunks


#: Content state a message has before inbound_header/inbound_body set it:
#: one delivered by the frame handler is complete; one built by the caller
#: has received nothing.
_CONTENT_STATE: Dict[str, Callable[[Message[Any]], object]] = {
    'ready': lambda msg: msg.frame_method is not None,
    'body_received': lambda msg: (msg.body_size if msg.frame_method
                                  is not None else 0),
    '_pending_chunks': _pending_chunks,
}

_SLOTS = frozenset(Message.__slots__)


def serialized_properties(msg: Message[Any]) -> bytes:
    """The property flags and list of ``msg``'s content header, from its
    class's ``_serialize_properties`` (py-amqp's hook: a subclass may
    override it to publish bytes the encoder would not produce).  The frame
    writer calls this for Message subclasses only."""
    raw = msg._serialize_properties()
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError('%s._serialize_properties() returned %s, not bytes'
                        % (type(msg).__name__, type(raw).__name__))
    return bytes(raw)
