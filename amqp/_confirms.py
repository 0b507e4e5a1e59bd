"""Publish batches for kombu 5.7's ``Producer.batch()``.

kombu asks the channel for ``create_publish_batch(max_size)`` (when
``supports_batch_publish`` is true) and then calls ``publish(message,
**basic_publish_kwargs)``, ``flush()``, ``discard()`` and ``close()`` on
the object it returns.  Messages are held until :meth:`PublishBatch.flush`,
which publishes them back to back and, on a confirm channel, waits once for
all their confirms (pipelined, :meth:`Channel.wait_for_confirms`).
"""

__all__ = ('PublishBatch',)


class PublishBatch:
    """Messages buffered for one channel until :meth:`flush`."""

    def __init__(self, channel, max_size):
        if isinstance(max_size, bool) or not isinstance(max_size, int) or \
                max_size <= 0:
            raise ValueError('max_size must be a positive int, not %r'
                             % (max_size,))
        self.channel = channel
        self.max_size = max_size
        self._buffer = []
        self._closed = False
        self._confirm_timeout = None

    def __len__(self):
        return len(self._buffer)

    def publish(self, message, exchange='', routing_key='', mandatory=False,
                immediate=False, timeout=None, confirm_timeout=None,
                **kwargs):
        """Buffer one publish; flush when ``max_size`` are buffered.

        Names and flags are checked now, so bad input raises here.
        """
        if self._closed:
            raise RuntimeError('publish batch is closed')
        from .channel import _check_flag, _check_name
        if not hasattr(message, 'properties') or \
                not hasattr(message, 'body'):
            raise TypeError('message must be an amqp.Message, not %s'
                            % type(message).__name__)
        args = (message, _check_name(exchange, 'exchange'),
                _check_name(routing_key, 'routing_key'),
                _check_flag(mandatory, 'mandatory'),
                _check_flag(immediate, 'immediate'), timeout)
        self._buffer.append(args)
        if confirm_timeout is not None:
            self._confirm_timeout = confirm_timeout
        if len(self._buffer) >= self.max_size:
            self.flush()

    def flush(self):
        """Publish everything buffered; on a confirm channel wait for all
        confirms and raise PublishConfirmError naming the failed tags."""
        if self._closed:
            raise RuntimeError('publish batch is closed')
        channel = self.channel
        buffered, self._buffer = self._buffer, []
        confirm = channel._confirm_publish or channel._confirm_selected
        if confirm and not channel._confirm_selected:
            channel.confirm_select()
        for message, exchange, routing_key, mandatory, immediate, timeout \
                in buffered:
            channel._basic_publish(message, exchange, routing_key, mandatory,
                                   immediate, timeout)
        timeout, self._confirm_timeout = self._confirm_timeout, None
        if confirm and buffered:
            channel.wait_for_confirms(timeout)

    def discard(self):
        """Drop what has not been flushed yet."""
        self._buffer = []

    def close(self):
        """Drop anything left; the batch can no longer be used."""
        self._buffer = []
        self._closed = True
