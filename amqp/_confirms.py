"""Publisher confirms: the state of one channel, and kombu's publish batch.

:class:`Confirms` holds everything a channel in confirm mode tracks (the
delivery-tag counter, unsettled publishes, nacks, returns matched to their
tags) and the one deadline loop that waits for settlement.  The channel
feeds it (:meth:`Confirms.published`, :meth:`Confirms.settle`,
:meth:`Confirms.returned`) and asks it to wait.

:class:`PublishBatch` is what kombu 5.7's ``Producer.batch()`` gets from
``Channel.create_publish_batch(max_size)``.

Neither imports the channel nor touches its private state: the channel
hands over the callables they use (its ``wait``, its non-waiting publish),
described here by the protocols :class:`ReplyWait` and
:class:`ConfirmingChannel`.
"""
from __future__ import annotations

import socket
import threading
from time import monotonic
from typing import (TYPE_CHECKING, Callable, Dict, Iterable, List, Optional,
                    Protocol, Tuple, Union)

from . import spec
from .exceptions import (AMQPError, MessageNacked, PublishConfirmError,
                         ReadTimeout)
from .serialization import dumps_method

if TYPE_CHECKING:
    from .basic_message import Message

__all__ = ('Confirms', 'ConfirmTimeout', 'PublishBatch', 'ConfirmCallback',
           'ReplyWait', 'ConfirmingChannel', 'BatchPublish')

#: ``on_confirm(delivery_tag, outcome)``, outcome 'ack', 'nack' or
#: 'returned'; 'lost' when automatic recovery replaced the connection
#: before the broker settled it.
ConfirmCallback = Callable[[int, str], object]
#: A publish's exchange or routing key, as the caller gave it.
_Name = Union[str, bytes]
#: What a batch buffers and hands to the channel's non-waiting publish:
#: (message, exchange, routing_key, mandatory, immediate, timeout).
_Publish = Tuple['Message', str, str, bool, bool, Optional[float]]
#: The channel's non-waiting publish, called with a :data:`_Publish`.
BatchPublish = Callable[['Message', str, str, bool, bool, Optional[float]],
                        object]


class ReplyWait(Protocol):
    """The channel's ``wait``, as :meth:`Confirms.wait` calls it."""

    def __call__(self, method: List[spec.MethodSig], *,
                 timeout: Optional[float]) -> object:
        """Wait for one of ``method``; ``socket.timeout`` when
        ``timeout`` runs out."""


class ConfirmingChannel(Protocol):
    """What :class:`PublishBatch` uses of its channel."""

    def wait_for_confirms(self, timeout: Optional[float] = None) -> object:
        """Wait until every publish is settled."""


_ACK_OR_NACK = [spec.Basic.Ack, spec.Basic.Nack]
_PUBLISH = spec.Basic.Publish
_PUBLISH_ARGS = spec.METHODS[_PUBLISH].args


class ConfirmTimeout(PublishConfirmError, socket.timeout):
    """Publishes still unconfirmed when the wait ran out.

    Both a :class:`~amqp.exceptions.PublishConfirmError` (``unconfirmed``
    names the tags) and a ``socket.timeout``, which is what py-amqp raises
    from ``basic_publish_confirm``.
    """

    def __init__(self, reply_text: Optional[str] = None,
                 nacked: Iterable[int] = (), returned: Iterable[int] = (),
                 unconfirmed: Iterable[int] = ()) -> None:
        PublishConfirmError.__init__(self, reply_text, nacked, returned,
                                     unconfirmed)

    def __str__(self) -> str:
        return self.reply_text or 'publisher confirms timed out'


class Confirms:
    """Publisher-confirm state of one channel (RabbitMQ confirm.select).

    Delivery tags count publishes from 1 after confirm.select.  A publish
    is *unsettled* until the broker acks or nacks it; a mandatory publish
    the broker returns is acked after its basic.return, and reported as
    returned.
    """

    def __init__(self) -> None:
        #: Guards the tag counter and the tables below: the thread that
        #: publishes records a tag while another thread (the one reading,
        #: or the consumer thread) may be settling acks.  Held for
        #: bookkeeping only; per-publish callbacks run outside it.
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything: the channel left confirm mode (or the broker
        closed it)."""
        self.selected = False
        self.seq = 0
        #: delivery tag -> per-publish callback or None
        self.unsettled: Dict[int, Optional[ConfirmCallback]] = {}
        #: how many of ``unsettled`` have a callback (none: settling runs
        #: no application code, see :meth:`quiet`)
        self.callbacks = 0
        self._nacked: List[int] = []
        #: delivery tag -> the error of its basic.return
        self._returned: Dict[int, AMQPError] = {}
        #: returns not yet matched to a delivery tag
        self._pending_returns: List[AMQPError] = []
        #: unsettled mandatory publishes: tag -> (exchange, routing_key)
        self._mandatory: Dict[int, Tuple[_Name, _Name]] = {}
        #: publishes whose connection was lost before their confirm came
        #: (automatic recovery: the broker will never settle them)
        self._lost: List[int] = []

    def select(self) -> None:
        """The broker answered confirm.select: start counting."""
        if not self.selected:
            self.selected = True
            self.seq = 0

    def published(self, on_confirm: Optional[ConfirmCallback],
                  mandatory: bool, exchange: _Name,
                  routing_key: _Name) -> int:
        """Record a publish about to be written; return its delivery tag.

        Recorded before the write, so that its ack cannot be read (by
        another thread) before its tag is known.  A write that sends
        nothing is undone with :meth:`withdraw`.
        """
        with self.lock:
            self.seq += 1
            tag = self.seq
            self.unsettled[tag] = on_confirm
            if on_confirm is not None:
                self.callbacks += 1
            if mandatory:
                self._mandatory[tag] = (exchange, routing_key)
        return tag

    def withdraw(self, tag: int) -> None:
        """The publish of ``tag`` was not sent at all (its write failed
        before the first byte): the broker never counted it."""
        with self.lock:
            if tag == self.seq:
                self.seq -= 1
            if self.unsettled.pop(tag, None) is not None:
                self.callbacks -= 1
            self._mandatory.pop(tag, None)

    def returned(self, exc: AMQPError, exchange: _Name,
                 routing_key: _Name) -> None:
        """Match a basic.return (which names no delivery tag) to a tag.

        Returns of one destination come in publish order and before that
        publish's ack, so the oldest unsettled mandatory publish to the
        same exchange and routing key is the one returned.  Failing that
        (names given as bytes, say), the return is matched when the next
        ack settles tags.
        """
        target = (exchange, routing_key)
        with self.lock:
            for tag, dest in self._mandatory.items():  # in publish order
                if dest == target and tag not in self._returned:
                    del self._mandatory[tag]
                    self._returned[tag] = exc
                    return
            self._pending_returns.append(exc)

    def settle(self, delivery_tag: int, multiple: bool,
               nacked: bool) -> None:
        """Apply a basic.ack / basic.nack; run per-publish callbacks."""
        unsettled = self.unsettled
        returned = self._returned
        with self.lock:
            if not multiple and not nacked and not self._pending_returns \
                    and not self._mandatory and \
                    unsettled.get(delivery_tag) is None:
                # the usual ack of one publish without a callback (or of
                # none unsettled): nothing else to match or to run
                unsettled.pop(delivery_tag, None)
                return
            if multiple:
                # tags are recorded in increasing order (dicts keep it): the
                # ones settled are a prefix, found without scanning the
                # window
                tags = []
                for t in unsettled:
                    if t > delivery_tag:
                        break
                    tags.append(t)
            else:
                tags = [delivery_tag] if delivery_tag in unsettled else []
            returns = self._pending_returns
            if returns and tags:
                # RabbitMQ acks an unroutable publish right after its
                # return: unmatched returns belong to the newest tags
                # settled.
                n = min(len(returns), len(tags))
                returned.update(zip(tags[-n:], returns[:n]))
                del returns[:n]
            mandatory = self._mandatory
            if nacked:
                self._nacked.extend(tags)
            callbacks = []
            for tag in tags:
                if mandatory:
                    mandatory.pop(tag, None)
                callback = unsettled.pop(tag)
                if callback is not None:
                    self.callbacks -= 1
                    callbacks.append((tag, callback, 'nack' if nacked else
                                      'returned' if tag in returned
                                      else 'ack'))
        for tag, callback, outcome in callbacks:
            callback(tag, outcome)

    def quiet(self) -> bool:
        """Whether settling now would run no per-publish callback.

        Exact at the moment it is asked: a publish recorded later cannot
        be settled by an ack already received (it is recorded before it
        is written)."""
        return not self.callbacks

    def wait(self, channel_wait: ReplyWait, done: Callable[[], bool],
             timeout: Optional[float], what: Union[str, int],
             drain: Optional[Callable[[Callable[[], bool], Optional[float]],
                                      None]] = None) -> None:
        """Wait for acks and nacks until ``done()``.

        ``drain(done, deadline)``, when given, handles frames until
        ``done()`` in one go (however many acks that takes); otherwise
        ``channel_wait`` is called for each ack or nack.  ``timeout``
        (seconds, None for no limit) bounds the whole wait; when it runs
        out, raises :class:`ConfirmTimeout` naming the unsettled tags
        (``what`` describes the wait in its text; an int is the delivery
        tag waited for, formatted only then).
        """
        deadline = None if timeout is None else monotonic() + timeout
        try:
            if drain is not None:
                # (the drain asks done() before it reads anything)
                try:
                    drain(done, deadline)
                    return   # (it returns once done() is true)
                except ReadTimeout:
                    raise
                except socket.timeout:
                    pass
            while not done():
                remaining = None if deadline is None else \
                    deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    raise self._timed_out(
                        'no publisher confirm for %s within %ss' % (
                            _described(what), timeout))
                try:
                    channel_wait(_ACK_OR_NACK, timeout=remaining)
                except ReadTimeout:
                    raise
                except socket.timeout:
                    continue
        except ReadTimeout as exc:
            # the broker went quiet: as bounded as a confirm_timeout
            raise self._timed_out('no publisher confirm for %s: %s' % (
                _described(what), exc)) from None

    def _timed_out(self, text: str) -> ConfirmTimeout:
        with self.lock:
            unconfirmed = sorted(self.unsettled)
        return ConfirmTimeout(text, unconfirmed=unconfirmed)

    def outcome(self, tag: int) -> Optional[AMQPError]:
        """Raise for a settled publish that was not accepted: MessageNacked
        for a nack; return the error of its basic.return (or None)."""
        if not self._nacked and not self._returned:
            # (the usual case, seen without the lock: ``tag`` is settled,
            # so a nack or return of it was recorded before this call)
            return None
        with self.lock:
            nacked = tag in self._nacked
            if nacked:
                self._nacked.remove(tag)
            error = self._returned.pop(tag, None)
        if nacked:
            raise MessageNacked('message with delivery tag %d was nacked '
                                'by the broker' % tag)
        return error

    def take_failures(self) -> Tuple[List[int], List[int]]:
        """``(nacked, returned)`` delivery tags since the last call."""
        with self.lock:
            nacked, self._nacked = sorted(self._nacked), []
            returned, self._returned = sorted(self._returned), {}
        return nacked, returned

    def lose(self) -> List[int]:
        """The connection was lost: every unsettled publish stays
        unconfirmed for good.  Runs their callbacks with ``'lost'``, keeps
        the tags for :meth:`take_lost`, and returns them."""
        with self.lock:
            lost = list(self.unsettled.items())
            self.unsettled.clear()
            self.callbacks = 0
            self._mandatory.clear()
            self._pending_returns = []
            self._lost.extend(tag for tag, _ in lost)
        for tag, callback in lost:
            if callback is not None:
                callback(tag, 'lost')
        return [tag for tag, _ in lost]

    def take_lost(self) -> List[int]:
        """Tags :meth:`lose` gave up on since the last call."""
        with self.lock:
            lost, self._lost = self._lost, []
        return lost


class PublishBatch:
    """Messages buffered for one channel until :meth:`flush`.

    kombu asks the channel for ``create_publish_batch(max_size)`` (when
    ``supports_batch_publish`` is true) and then calls ``publish(message,
    **basic_publish_kwargs)``, ``flush()``, ``discard()`` and ``close()``.
    ``flush`` publishes the messages back to back and, on a confirm
    channel, waits once for all their confirms (pipelined).
    """

    def __init__(self, channel: ConfirmingChannel, max_size: int,
                 publish: BatchPublish, confirm_select: Callable[[], object],
                 confirming: Callable[[], bool]) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or \
                max_size <= 0:
            raise ValueError('max_size must be a positive int, not %r'
                             % (max_size,))
        #: the channel it publishes on (kombu checks it)
        self.channel = channel
        self.max_size = max_size
        self._publish = publish
        self._confirm_select = confirm_select
        self._confirming = confirming
        self._buffer: List[_Publish] = []
        self._closed = False
        self._confirm_timeout: Optional[float] = None

    def __len__(self) -> int:
        return len(self._buffer)

    def publish(self, message: Message, exchange: str = '',
                routing_key: str = '', mandatory: bool = False,
                immediate: bool = False, timeout: Optional[float] = None,
                confirm_timeout: Optional[float] = None,
                **kwargs: object) -> None:
        """Buffer one publish; flush when ``max_size`` are buffered.

        The arguments are checked now (by the same encoder a publish
        uses), so bad input raises here rather than at flush.
        """
        if self._closed:
            raise RuntimeError('publish batch is closed')
        if not hasattr(message, 'properties') or \
                not hasattr(message, 'body'):
            raise TypeError('message must be an amqp.Message, not %s'
                            % type(message).__name__)
        dumps_method(_PUBLISH, _PUBLISH_ARGS,
                     (0, exchange, routing_key, mandatory, immediate))
        self._buffer.append((message, exchange, routing_key, mandatory,
                             immediate, timeout))
        if confirm_timeout is not None:
            self._confirm_timeout = confirm_timeout
        if len(self._buffer) >= self.max_size:
            self.flush()

    def flush(self) -> None:
        """Publish everything buffered; on a confirm channel wait for all
        confirms and raise PublishConfirmError naming the failed tags."""
        if self._closed:
            raise RuntimeError('publish batch is closed')
        buffered, self._buffer = self._buffer, []
        confirm = self._confirming()
        if confirm:
            self._confirm_select()
        for args in buffered:
            self._publish(*args)
        timeout, self._confirm_timeout = self._confirm_timeout, None
        if confirm and buffered:
            self.channel.wait_for_confirms(timeout)

    def discard(self) -> None:
        """Drop what has not been flushed yet."""
        self._buffer = []

    def close(self) -> None:
        """Drop anything left; the batch can no longer be used."""
        self._buffer = []
        self._closed = True


def _described(what: Union[str, int]) -> str:
    """``what`` a confirm wait waited for, for its error's text (an int is
    a delivery tag)."""
    return 'delivery tag %d' % what if type(what) is int else str(what)
