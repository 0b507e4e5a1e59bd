"""The AMQP message, as py-amqp's ``amqp.basic_message.Message``."""
from . import spec

__all__ = ('Message',)


class Message:
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
    ``channel``.  Spec: AMQP 0-9-1 section 1.8 (class basic).
    """

    __slots__ = ('body', 'properties', 'delivery_info', 'channel',
                 'frame_method', 'frame_args', 'body_size', '__weakref__')

    CLASS_ID = 60
    #: (name, format letter) of each basic property, in flag order.
    PROPERTIES = spec.BASIC_PROPERTIES

    def __init__(self, body='', children=None, channel=None, **properties):
        self.body = body
        self.properties = properties
        self.channel = channel
        self.delivery_info = None
        self.frame_method = None
        self.frame_args = None
        self.body_size = 0

    def __getattr__(self, name):
        # Properties read as attributes (msg.content_type), as in py-amqp.
        if name.startswith('__') or name in Message.__slots__:
            raise AttributeError(name)
        try:
            return self.properties[name]
        except (KeyError, AttributeError):
            raise AttributeError(name) from None

    def __eq__(self, other):
        if not isinstance(other, Message):
            return NotImplemented
        return (self.body == other.body and
                self.properties == other.properties)

    __hash__ = None

    def __repr__(self):
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

    def __getstate__(self):
        return {'body': self.body, 'properties': self.properties,
                'delivery_info': self.delivery_info}

    def __setstate__(self, state):
        self.__init__(state['body'], **state['properties'])
        self.delivery_info = state['delivery_info']

    @property
    def headers(self):
        """The ``application_headers`` property (None when unset)."""
        return self.properties.get('application_headers')

    @property
    def application_headers(self):
        """The ``application_headers`` property (None when unset)."""
        return self.properties.get('application_headers')

    @property
    def delivery_tag(self):
        """Delivery tag of a received message (None when not received)."""
        info = self.delivery_info
        return info.get('delivery_tag') if info else None

    def _channel_for(self, action):
        if self.channel is None or self.delivery_tag is None:
            raise ValueError('cannot %s a message that was not received '
                             'from a channel' % action)
        return self.channel

    def ack(self, multiple=False):
        """Acknowledge this message on the channel it came from."""
        self._channel_for('ack').basic_ack(self.delivery_tag, multiple)

    def reject(self, requeue=False):
        """Reject this message (basic.reject)."""
        self._channel_for('reject').basic_reject(self.delivery_tag, requeue)

    def nack(self, multiple=False, requeue=True):
        """Negatively acknowledge this message (basic.nack)."""
        self._channel_for('nack').basic_nack(self.delivery_tag, multiple,
                                             requeue)
