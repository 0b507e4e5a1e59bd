"""The wire trace: one log line per method (or heartbeat) sent or received.

Turn it on by setting the ``amqp.wire`` logger to DEBUG *before*
connecting (``python -m amqp shell`` and ``--trace`` do)::

    logging.basicConfig()
    logging.getLogger('amqp.wire').setLevel(logging.DEBUG)

Each line reads ``HOST > ch1 basic.publish(exchange='', routing_key='q',
mandatory=False, immediate=False) +content 5 bytes {'content_type':
'text/plain'}``: ``>`` for sent, ``<`` for received, then the channel, the
method with its arguments, and for content methods the body size and the
properties (never the body).  Credentials are redacted: the SASL response
of connection.start-ok and secure-ok, update-secret's new secret.

When the logger is off at connect time nothing is wrapped, so the trace
costs nothing on the hot paths.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from . import spec
from .method_framing import FrameHandler, FrameWriter, MethodCallback
from .serialization import decoder_for

__all__ = ('logger', 'enabled', 'traced_handler', 'traced_writer',
           'describe')

logger = logging.getLogger('amqp.wire')

#: Arguments never written to the trace: (method signature, argument name).
SECRETS = frozenset({
    (spec.Connection.StartOk, 'response'),
    (spec.Connection.SecureOk, 'response'),
    (spec.Connection.UpdateSecret, 'new_secret'),
})

#: Longest rendering of one argument value before it is cut short.
MAX_VALUE = 200


def enabled() -> bool:
    """True when the ``amqp.wire`` logger would emit DEBUG records."""
    return logger.isEnabledFor(logging.DEBUG)


def _value(value: object) -> str:
    text = repr(value)
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + '...(%d chars)' % len(text)
    return text


def describe(channel: int, method_sig: spec.MethodSig, args_payload: bytes,
             content: Optional[object]) -> str:
    """One trace line (without host and direction) for a method whose
    serialized arguments are ``args_payload``."""
    method = spec.METHODS.get((method_sig[0], method_sig[1]))
    if method is None:
        return 'ch%d unknown method %r' % (channel, method_sig)
    parts = []
    if method.args:
        try:
            values = decoder_for(method.args)(args_payload, 0)[0]
        except Exception as exc:  # the trace must never break the caller
            parts.append('<undecodable: %s>' % exc)
        else:
            for name, value in zip(method.arg_names, values):
                if name == 'ticket':  # reserved, always 0
                    continue
                if (method.sig, name) in SECRETS:
                    secret = len(value) if isinstance(value, (str, bytes)) \
                        else 0
                    parts.append('%s=<redacted %d bytes>' % (name, secret))
                else:
                    parts.append('%s=%s' % (name, _value(value)))
    line = 'ch%d %s(%s)' % (channel, method.name, ', '.join(parts))
    if content is not None:
        properties = getattr(content, 'properties', None) or {}
        size: Optional[int] = getattr(content, 'body_size', None)
        body = getattr(content, 'body', None)
        if body is not None:
            size = len(body) if not isinstance(body, memoryview) \
                else body.nbytes
        line += ' +content %s bytes %s' % (size, _value(
            {k: v for k, v in properties.items() if v is not None}))
    return line


def traced_handler(host: str, callback: MethodCallback) -> MethodCallback:
    """Wrap ``callback(channel, method_sig, payload, content)`` (what
    ``frame_handler`` calls per received method) to log it first."""
    debug = logger.debug
    offset = spec.METHOD_ARGS_OFFSET

    def on_method(channel: int, method_sig: spec.MethodSig, payload: bytes,
                  content: Any) -> object:
        debug('%s < %s', host,
              describe(channel, method_sig, payload[offset:], content))
        return callback(channel, method_sig, payload, content)

    return on_method


def traced_writer(host: str, writer: FrameWriter) -> FrameWriter:
    """Wrap a ``frame_writer`` to log each method it writes."""
    debug = logger.debug

    def write_frame(type_: int, channel: int, method_sig: spec.MethodSig,
                    args: Optional[bytes], content: Any = None) -> None:
        debug('%s > %s', host,
              describe(channel, method_sig, args or b'', content))
        writer(type_, channel, method_sig, args, content)

    return write_frame


def heartbeat(host: str, direction: str) -> None:
    logger.debug('%s %s heartbeat', host, direction)


def traced_frames(host: str, on_frame: FrameHandler) -> FrameHandler:
    """Wrap a frame handler to log the heartbeats it is fed (they carry
    no method, so :func:`traced_handler` never sees them)."""
    heartbeat_type = spec.FRAME_HEARTBEAT

    def on_traced_frame(frame: Any) -> bool:
        if frame[0] == heartbeat_type:
            heartbeat(host, '<')
        return on_frame(frame)

    return on_traced_frame
