"""Sending methods, waiting for replies and dispatching incoming methods.

Shared by :class:`~amqp.connection.Connection` (channel 0) and
:class:`~amqp.channel.Channel`.  Every incoming method is looked up in
:data:`amqp.spec.METHODS`; its arguments are decoded by the generated codec
for its signature and handed to the handler registered for it and to the
caller waiting for it, if any.
"""
import logging
from time import monotonic

from vine import ensure_promise, promise

from . import spec
from .exceptions import (AMQPNotImplementedError, FrameSyntaxError,
                         RecoverableConnectionError)
from .serialization import decoder_for, dumps

__all__ = ('AbstractChannel',)

logger = logging.getLogger('amqp')

_METHODS = spec.METHODS


#: what a left-out reserved field reads as, by format letter
_RESERVED_DEFAULTS = {'s': '', 'S': '', 'b': False, 'B': 0}


def _decode_without_reserved(amqp_method, payload):
    """Arguments of a method whose trailing *reserved* fields were left out
    (spec.TRAILING_RESERVED), the missing ones filled with their empty
    value; None for anything else (the payload must end exactly where the
    reserved fields would start)."""
    fmt = amqp_method.args
    for missing in range(1, spec.TRAILING_RESERVED.get(amqp_method.sig,
                                                       0) + 1):
        try:
            args, end = decoder_for(fmt[:-missing])(payload, 4)
        except FrameSyntaxError:
            continue
        if end == len(payload):
            return args + [_RESERVED_DEFAULTS[letter]
                           for letter in fmt[-missing:]]
    return None


class AbstractChannel:
    """Superclass for Connection and Channel.

    Subclasses fill ``self._callbacks`` (method_sig -> handler) in
    ``_setup_listeners``.  ``self._pending`` maps a method signature to the
    promise of the caller waiting for it.
    """

    #: methods accepted on a channel that is closing (spec 2.2.3: everything
    #: else is discarded until close-ok)
    _ALLOWED_METHODS_WHEN_CLOSING = ()

    def __init__(self, connection, channel_id):
        self.is_closing = False
        self.connection = connection
        self.channel_id = channel_id
        connection.channels[channel_id] = self
        self.method_queue = []  # py-amqp attribute, kept for compatibility
        self.auto_decode = False
        self._pending = {}
        self._callbacks = {}
        self._setup_listeners()

    def _setup_listeners(self):
        raise NotImplementedError('subclass responsibility')

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _check_usable(self):
        """Raise if nothing can be sent on this channel any more."""
        if self.connection is None:
            raise RecoverableConnectionError(
                'channel %r is closed' % (self.channel_id,))

    def _raise_deferred(self):
        """Raise an error received while another channel was waiting."""

    def send_method(self, sig, format=None, args=None, content=None,
                    wait=None, callback=None, returns_tuple=False):
        """Send method ``sig`` with ``args`` serialized by ``format``.

        Arguments are encoded before anything is written, so bad input
        raises TypeError/ValueError with nothing sent.  With ``wait``
        (a reply signature or a list of them) block for the reply and return
        its arguments (see :meth:`wait`).
        """
        conn = self.connection
        if conn is None:
            self._check_usable()
        payload = dumps(format, args) if format else b''
        p = promise()
        writer = conn.frame_writer
        if writer is None:
            raise RecoverableConnectionError('connection already closed')
        writer(1, self.channel_id, sig, payload, content)
        if callback:
            p.then(callback)
        p()
        if wait:
            return self.wait(wait, returns_tuple=returns_tuple)
        return p

    def close(self):
        """Close this channel (subclass responsibility)."""
        raise NotImplementedError('must be overridden by subclass')

    def wait(self, method, callback=None, timeout=None, returns_tuple=False):
        """Drain events until one of ``method`` (sig or list) arrives.

        Returns the reply's first argument (or all of them as a tuple with
        ``returns_tuple``).  ``timeout`` bounds the whole wait and raises
        ``socket.timeout`` when it runs out.
        """
        p = ensure_promise(callback)
        pending = self._pending
        methods = method if isinstance(method, list) else [method]
        previous = [(m, pending.get(m)) for m in methods]
        for m in methods:
            pending[m] = p
        conn = self.connection
        deadline = None if timeout is None else monotonic() + timeout
        outer = getattr(conn, '_waiting_on', None)
        if conn is not None:
            conn._waiting_on = self
        try:
            while not p.ready:
                if conn is None or self.connection is None:
                    raise RecoverableConnectionError(
                        'channel %r closed while waiting for %s' % (
                            self.channel_id,
                            ', '.join(spec.method_name(m) or str(m)
                                      for m in methods)))
                conn._drain_for(self, deadline)
            value = p.value
        finally:
            if conn is not None:
                conn._waiting_on = outer
            for m, prev in previous:
                if prev is None:
                    if pending.get(m) is p:
                        del pending[m]
                else:
                    pending[m] = prev
        # after the reply is in hand, so that raising does not lose it
        self._raise_deferred()
        args = value[0][1:] if value else ()
        if returns_tuple:
            return args
        return args[0] if args else None

    def dispatch_method(self, method_sig, payload, content):
        """Decode an incoming method and call its handler and waiter."""
        if self.is_closing and method_sig not in \
                self._ALLOWED_METHODS_WHEN_CLOSING:
            # spec 2.2.3: a closing channel discards all but close/close-ok
            logger.debug('channel %s closing: dropping %s', self.channel_id,
                         method_sig)
            return
        try:
            amqp_method = _METHODS[method_sig]
        except KeyError:
            raise AMQPNotImplementedError(
                'Unknown AMQP method {!r}'.format(method_sig)) from None
        listener = self._callbacks.get(method_sig)
        one_shot = self._pending.pop(method_sig, None)
        if listener is None and one_shot is None:
            logger.debug('channel %s: no handler for %s', self.channel_id,
                         amqp_method.name)
            return
        if amqp_method.args:
            try:
                args, _ = decoder_for(amqp_method.args)(payload, 4)
            except FrameSyntaxError:
                args = _decode_without_reserved(amqp_method, payload)
                if args is None:
                    raise
        else:
            args = []
        if amqp_method.content:
            args.append(content)
        if listener is not None:
            listener(*args)
        if one_shot is not None:
            one_shot(method_sig, *args)
        if getattr(self.connection, '_waiting_on', self) is None:
            self._raise_deferred()  # from drain_events
