"""The kernel the implementation techniques are compared on (see
docs/accelerator.rst): parse a buffer of complete frames holding
basic.deliver + content header + body frames into delivery tuples.

Written once, typed, indexing bytes directly, so that the same source can
be run by CPython as is and compiled by mypyc; ``_speedups_kernel.c`` is
the same algorithm in C.  Supported: content properties without the
headers table (the comparison is about the frame and method work; a
table raises ValueError here as it does in the C version).

A delivery is (channel, consumer_tag, delivery_tag, redelivered,
exchange, routing_key, properties, body).
"""
from typing import Any, Dict, List, Tuple

Delivery = Tuple[int, str, int, bool, str, str, Dict[str, Any], bytes]

_SHORTSTR_PROPS = {
    15: 'content_type', 14: 'content_encoding', 10: 'correlation_id',
    9: 'reply_to', 8: 'expiration', 7: 'message_id', 5: 'type',
    4: 'user_id', 3: 'app_id', 2: 'cluster_id',
}


def _u16(buf: bytes, i: int) -> int:
    return (buf[i] << 8) | buf[i + 1]


def _u32(buf: bytes, i: int) -> int:
    return (buf[i] << 24) | (buf[i + 1] << 16) | (buf[i + 2] << 8) | \
        buf[i + 3]


def _u64(buf: bytes, i: int) -> int:
    return (_u32(buf, i) << 32) | _u32(buf, i + 4)


def _frame(buf: bytes, pos: int, want: int) -> Tuple[int, int, int]:
    """(channel, payload start, payload end) of the frame at ``pos``."""
    if len(buf) - pos < 8:
        raise ValueError('truncated frame')
    if buf[pos] != want:
        raise ValueError('unexpected frame type %d' % buf[pos])
    size = _u32(buf, pos + 3)
    start = pos + 7
    end = start + size
    if end >= len(buf):
        raise ValueError('truncated frame')
    if buf[end] != 0xCE:
        raise ValueError('bad frame end')
    return _u16(buf, pos + 1), start, end


def _shortstr(buf: bytes, i: int, end: int) -> Tuple[str, int]:
    if i >= end:
        raise ValueError('truncated shortstr')
    n = buf[i]
    j = i + 1 + n
    if j > end:
        raise ValueError('truncated shortstr')
    return buf[i + 1:j].decode('utf-8'), j


def parse_deliveries(buf: bytes) -> List[Delivery]:
    out: List[Delivery] = []
    pos = 0
    n = len(buf)
    while pos < n:
        channel, i, end = _frame(buf, pos, 1)
        if end - i < 4 or _u32(buf, i) != (60 << 16 | 60):
            raise ValueError('not basic.deliver')
        consumer_tag, i = _shortstr(buf, i + 4, end)
        if end - i < 9:
            raise ValueError('truncated basic.deliver')
        delivery_tag = _u64(buf, i)
        redelivered = bool(buf[i + 8] & 1)
        exchange, i = _shortstr(buf, i + 9, end)
        routing_key, i = _shortstr(buf, i, end)
        pos = end + 1
        hchannel, i, end = _frame(buf, pos, 2)
        if hchannel != channel or end - i < 14:
            raise ValueError('bad content header')
        body_size = _u64(buf, i + 4)
        flags = _u16(buf, i + 12)
        i += 14
        props: Dict[str, Any] = {}
        if flags:
            for bit in range(15, 1, -1):
                if not flags & (1 << bit):
                    continue
                name = _SHORTSTR_PROPS.get(bit)
                if name is not None:
                    props[name], i = _shortstr(buf, i, end)
                elif bit == 13:
                    raise ValueError('headers table: not in this kernel')
                elif bit == 12 or bit == 11:
                    if i >= end:
                        raise ValueError('truncated properties')
                    props['delivery_mode' if bit == 12 else 'priority'] = \
                        buf[i]
                    i += 1
                else:    # 6: timestamp
                    if end - i < 8:
                        raise ValueError('truncated properties')
                    props['timestamp'] = _u64(buf, i)
                    i += 8
        pos = end + 1
        if body_size == 0:
            body = b''
        else:
            parts: List[bytes] = []
            got = 0
            while got < body_size:
                bchannel, i, end = _frame(buf, pos, 3)
                if bchannel != channel or got + end - i > body_size:
                    raise ValueError('bad body frame')
                parts.append(buf[i:end])
                got += end - i
                pos = end + 1
            body = parts[0] if len(parts) == 1 else b''.join(parts)
        out.append((channel, consumer_tag, delivery_tag, redelivered,
                    exchange, routing_key, props, body))
    return out
