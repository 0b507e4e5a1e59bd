"""Field values as AMQP 0-9-1 carries them: short and long strings,
timestamps, decimals, and field tables and arrays (value tags as RabbitMQ
actually sends them).

Pure functions, no I/O.  :mod:`amqp.serialization` builds the method
argument and content property codecs on these; :func:`encode_table` and
:func:`decode_table` are the public entry points (also importable from
there).

Field-table value tags follow what RabbitMQ really sends and accepts (its
"AMQP 0-9-1 errata" page), not the 0-9-1 PDF: signed ``b s I l``, unsigned
``B u i``, plus ``t f d D S x A T F V``; decoding also reads ``L`` and
``U`` as signed 64/16-bit ints, as py-amqp (which writes ``L``) does.
Encoding picks the tags py-amqp 5.x picks (see :mod:`amqp.serialization`).

Decoding errors never escape as ``struct.error``/``IndexError``/
``UnicodeDecodeError``: they become :class:`~amqp.exceptions.FrameSyntaxError`.
Encoding errors from bad caller input are ``TypeError``/``ValueError``
naming the field.
"""
from __future__ import annotations

import calendar
import struct
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from .exceptions import FrameSyntaxError

__all__ = ('encode_table', 'decode_table', 'FieldValue', 'FieldTable',
           'EncodableValue', 'EncodableTable', 'Buffer', 'MAX_NESTING')

# -- Types (aliases are evaluated at run time: no ``X | Y`` here for 3.9) --

#: What a decoder returns: a value of a field table, field array, method
#: argument or content property.
FieldValue = Union[None, bool, int, float, str, bytes, Decimal, datetime,
                   'FieldTable', List['FieldValue']]
#: A decoded field table.
FieldTable = Dict[str, FieldValue]
#: What the encoders accept (anything else raises TypeError naming the
#: field).  Tables may be any mapping and arrays any list or tuple, so a
#: ``Dict[str, str]`` of headers is an EncodableTable as it is.
EncodableValue = Union[None, bool, int, float, str, bytes, bytearray,
                       memoryview, Decimal, datetime, 'EncodableTable',
                       Sequence['EncodableValue']]
EncodableTable = Mapping[str, EncodableValue]
#: Bytes-like input to the decoders (copied to ``bytes`` first).
Buffer = Union[bytes, bytearray, memoryview]
#: How an error message names a value: a field name, or (container, key)
#: formatted only when the error is raised.
_Field = Union[str, Tuple[str, object]]

_I8 = struct.Struct('>b')
_I16 = struct.Struct('>h')
_U16 = struct.Struct('>H')
_I32 = struct.Struct('>i')
_U32 = struct.Struct('>I')
_I64 = struct.Struct('>q')
_U64 = struct.Struct('>Q')
_F32 = struct.Struct('>f')
_F64 = struct.Struct('>d')
_DECIMAL = struct.Struct('>Bi')
# a table value's tag with its 32-bit length ('S', 'x') or value ('I')
_TAG_U32 = struct.Struct('>cI')
_TAG_I32 = struct.Struct('>ci')
# Bound once: the table codecs call these per entry.
_u32_from = _U32.unpack_from
_i32_from = _I32.unpack_from
_u32_pack = _U32.pack
_tag_u32_pack = _TAG_U32.pack
_tag_i32_pack = _TAG_I32.pack

#: Deepest nesting of tables/arrays we decode; a peer cannot make us recurse
#: until RecursionError.
MAX_NESTING = 64



def syntax(what: object) -> FrameSyntaxError:
    """The error for a malformed frame (what was wrong with it)."""
    return FrameSyntaxError('malformed frame: %s' % (what,))


# ---------------------------------------------------------------------------
# Strings

#: One-octet strings by value: shortstr length prefixes and bit octets.
OCTETS = tuple(bytes((i,)) for i in range(256))


def str_bytes(value: object, field: str) -> bytes:
    """The bytes of a str/bytes argument (None is empty); TypeError else."""
    if isinstance(value, str):
        try:
            return value.encode('utf-8', 'surrogateescape')
        except UnicodeEncodeError as exc:
            raise _unencodable(field, value, exc) from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if value is None:
        return b''
    raise TypeError('%s must be str or bytes, not %s'
                    % (field, type(value).__name__))


def enc_shortstr(value: object, field: str) -> bytes:
    if type(value) is str:
        try:
            raw = value.encode()
        except UnicodeEncodeError:
            raw = str_bytes(value, field)
    else:
        raw = str_bytes(value, field)
    n = len(raw)
    if n > 255:
        raise ValueError('%s is %d bytes long; a shortstr holds at most 255'
                         % (field, n))
    return OCTETS[n] + raw


def enc_longstr(value: object, field: str) -> bytes:
    if isinstance(value, str):
        try:
            value = value.encode('utf-8', 'surrogateescape')
        except UnicodeEncodeError as exc:
            raise ValueError('%s: cannot encode %r as UTF-8: %s'
                             % (field, value, exc)) from None
    elif value is None:
        return b'\x00\x00\x00\x00'
    elif not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError('%s must be str or bytes, not %s'
                        % (field, type(value).__name__))
    n = len(value)
    if n > 0xFFFFFFFF:
        raise ValueError('%s is too long for a longstr' % (field,))
    return _U32.pack(n) + bytes(value)


def dec_str(raw: bytes) -> str:
    """Decode UTF-8 text from the wire; undecodable bytes survive a
    round trip through ``surrogateescape`` instead of raising."""
    return raw.decode('utf-8', 'surrogateescape')


def dec_table_str(raw: bytes) -> Union[str, bytes]:
    """A longstr inside a table: text if it is UTF-8, else bytes (RabbitMQ
    uses the same tag for both)."""
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        return raw


# ---------------------------------------------------------------------------
# Timestamps

def enc_timestamp(value: object, field: str) -> bytes:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # naive datetimes are UTC, as py-amqp has it
            secs = calendar.timegm(value.timetuple())
        else:
            secs = int(value.timestamp())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            secs = int(value)
        except (ValueError, OverflowError):  # nan, inf
            raise ValueError('%s: timestamp %r is not a finite number'
                             % (field, value)) from None
    else:
        raise TypeError('%s must be a datetime or a number of seconds, not %s'
                        % (field, type(value).__name__))
    if not 0 <= secs <= 0xFFFFFFFFFFFFFFFF:
        raise ValueError('%s: timestamp %r is out of range' % (field, value))
    return _U64.pack(secs)


def dec_timestamp(secs: int) -> datetime:
    """Naive UTC datetime (py-amqp's choice), clamped to datetime's range."""
    try:
        return datetime.fromtimestamp(secs, timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        raise syntax('timestamp %d out of range' % secs) from None


# ---------------------------------------------------------------------------
# Field tables and arrays

def _enc_decimal(value: Decimal, field: str) -> bytes:
    try:
        sign, digits, exponent = value.as_tuple()
    except (AttributeError, InvalidOperation):
        raise ValueError('%s: %r is not a finite decimal' % (field, value))
    if not isinstance(exponent, int):
        raise ValueError('%s: %r is not a finite decimal' % (field, value))
    scale = -exponent if exponent < 0 else 0
    unscaled = int(value.scaleb(scale))
    if not 0 <= scale <= 255 or not -2**31 <= unscaled < 2**31:
        raise ValueError('%s: decimal %r does not fit AMQP decimal (scale '
                         '0..255, 32-bit value)' % (field, value))
    return b'D' + _DECIMAL.pack(scale, unscaled)


def enc_value(v: EncodableValue, field: _Field, depth: int = 0) -> bytes:
    """Encode one table/array value with its tag.

    ``field`` names the value in error messages: a string, or a
    (container-name, key) pair formatted only when an error is raised.
    """
    # Exact types first, through one saved type(v): faster than
    # ``v.__class__`` on mixed values, but mypy does not narrow ``v``
    # through ``t``, hence the ignores.  Subclasses are handled below.
    t = type(v)
    if t is str:
        try:
            v = v.encode()  # type: ignore[union-attr]
        except UnicodeEncodeError:
            v = _enc_text(v, field)  # type: ignore[arg-type]
        return _tag_u32_pack(b'S', len(v)) + v
    if t is int:
        if -0x80000000 <= v <= 0x7FFFFFFF:  # type: ignore[operator]
            return _tag_i32_pack(b'I', v)
        if -2**63 <= v <= 2**63 - 1:  # type: ignore[operator]
            return b'l' + _I64.pack(v)
        raise ValueError('%s: integer %d does not fit a signed 64-bit '
                         'table value'
                         % (_name(field), v))  # type: ignore[str-format]
    if t is bool:
        return b't\x01' if v else b't\x00'
    if t is dict:
        return b'F' + enc_table_body(
            v, _name(field), depth + 1)  # type: ignore[arg-type]
    if v is None:
        return b'V'
    if t is float:
        return b'd' + _F64.pack(v)
    if isinstance(v, bytes):
        # py-amqp's choice: a longstr, so a py-amqp consumer gets the same
        # value (text when it is UTF-8) whichever of us published it.
        return _tag_u32_pack(b'S', len(v)) + v
    if isinstance(v, (bytearray, memoryview)):
        # py-amqp cannot send these at all; they are our way to send 'x'.
        v = bytes(v)
        return _tag_u32_pack(b'x', len(v)) + v
    if isinstance(v, (list, tuple)):
        return b'A' + enc_array_body(v, _name(field), depth + 1)
    if isinstance(v, datetime):
        return b'T' + enc_timestamp(v, _name(field))
    if isinstance(v, Decimal):
        return _enc_decimal(v, _name(field))
    if isinstance(v, bool):
        return b't\x01' if v else b't\x00'
    if isinstance(v, int):
        return enc_value(int(v), field, depth)
    if isinstance(v, str):  # its text, not its str() (a str Enum)
        return enc_value(str.__str__(v), field, depth)
    if isinstance(v, dict):
        return b'F' + enc_table_body(v, _name(field), depth + 1)
    if isinstance(v, float):
        return b'd' + _F64.pack(v)
    raise TypeError('%s: no AMQP field-table type can carry %s value %r'
                    % (_name(field), type(v).__name__, v))


def _enc_text(value: str, field: _Field) -> bytes:
    """UTF-8 of text that strict encoding refused: surrogateescape'd bytes
    go back out as they came in; other lone surrogates are a ValueError."""
    try:
        return value.encode('utf-8', 'surrogateescape')
    except UnicodeEncodeError as exc:
        raise _unencodable(_name(field), value, exc) from None


def _unencodable(field: str, value: object,
                 exc: UnicodeEncodeError) -> ValueError:
    return ValueError('%s: cannot encode %r as UTF-8: %s'
                      % (field, value, exc))


def _name(field: _Field) -> str:
    if isinstance(field, tuple):
        return '%s[%r]' % field
    return field


#: str table key -> its length-prefixed UTF-8.  Header and argument keys
#: come from a small vocabulary, so encoding each once pays; bounded.
_KEY_CACHE: Dict[str, bytes] = {}
_KEY_CACHE_MAX = 1024


def _enc_key(k: object, field: str) -> bytes:
    """Validate and encode a table key (the cache-miss path)."""
    if type(k) is not str:
        if isinstance(k, bytes):
            k = k.decode('utf-8', 'surrogateescape')
        elif isinstance(k, str):
            k = str.__str__(k)
        else:
            raise TypeError('%s: table key %r must be str, not %s'
                            % (field, k, type(k).__name__))
        cache = False
    else:
        cache = True
    try:
        kb = k.encode('utf-8', 'surrogateescape')
    except UnicodeEncodeError as exc:
        raise _unencodable('%s: table key' % field, k, exc) from None
    if len(kb) > 255:
        raise ValueError('%s: table key %r is %d bytes long; at most 255'
                         % (field, k[:40] + '...', len(kb)))
    prefixed = OCTETS[len(kb)] + kb
    if cache:
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[k] = prefixed
    return prefixed


def enc_table_body(d: EncodableTable, field: str = 'table',
                    depth: int = 0) -> bytes:
    if not d:  # most declare/bind/consume calls pass no arguments
        return b'\x00\x00\x00\x00'
    if depth > MAX_NESTING:
        raise ValueError('%s: tables nested deeper than %d' %
                         (field, MAX_NESTING))
    parts: List[bytes] = []
    append = parts.append
    key_get = _KEY_CACHE.get
    for k, v in d.items():
        # only str keys are cached, and no other type compares equal to one
        kp = key_get(k)
        if kp is None:
            kp = _enc_key(k, field)
        append(kp)
        # One saved type(v) per value; mypy does not narrow ``v`` through
        # ``t``, hence the ignores.
        t = type(v)
        if t is str:
            try:  # strict UTF-8 first: the argument-free call is the fast one
                v = v.encode()  # type: ignore[union-attr]
            except UnicodeEncodeError:
                v = _enc_text(v, (field, k))  # type: ignore[arg-type]
            append(_tag_u32_pack(b'S', len(v)))
            append(v)
        elif t is int and \
                -0x80000000 <= v <= 0x7FFFFFFF:  # type: ignore[operator]
            append(_tag_i32_pack(b'I', v))
        else:
            append(enc_value(v, (field, k), depth))
    body = b''.join(parts)
    return _u32_pack(len(body)) + body




def enc_array_body(items: Sequence[EncodableValue], field: str = 'array',
                    depth: int = 0) -> bytes:
    if depth > MAX_NESTING:
        raise ValueError('%s: arrays nested deeper than %d'
                         % (field, MAX_NESTING))
    body = b''.join([enc_value(v, (field, i), depth)
                     for i, v in enumerate(items)])
    return _U32.pack(len(body)) + body


def encode_table(d: Optional[EncodableTable], field: str = 'table') -> bytes:
    """Encode a dict as an AMQP field table (length-prefixed)."""
    if d is None:
        return b'\x00\x00\x00\x00'
    if not isinstance(d, dict):
        try:
            d = dict(d)
        except (TypeError, ValueError):
            raise TypeError('%s must be a dict, not %s'
                            % (field, type(d).__name__)) from None
    return enc_table_body(d, field)


def _dec_value(buf: bytes, offset: int, end: int,
               depth: int) -> Tuple[FieldValue, int]:
    """Decode one tagged value; returns (value, offset)."""
    tag = buf[offset]
    offset += 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        return fixed[0](buf, offset)[0], offset + fixed[1]
    if tag == 83 or tag == 120:  # 'S', 'x'
        n, = _U32.unpack_from(buf, offset)
        offset += 4
        if n > end - offset:
            raise syntax('longstr of %d bytes runs past its table' % n)
        raw = buf[offset:offset + n]
        return (dec_table_str(raw) if tag == 83 else raw), offset + n
    if tag == 70:  # 'F'
        return dec_table(buf, offset, end, depth + 1)
    if tag == 116:  # 't'
        return buf[offset] != 0, offset + 1
    if tag == 65:  # 'A'
        return dec_array(buf, offset, end, depth + 1)
    if tag == 84:  # 'T'
        return dec_timestamp(_U64.unpack_from(buf, offset)[0]), offset + 8
    if tag == 86:  # 'V'
        return None, offset
    if tag == 66:  # 'B'
        return buf[offset], offset + 1
    if tag == 68:  # 'D'
        scale, value = _DECIMAL.unpack_from(buf, offset)
        return Decimal(value).scaleb(-scale), offset + 5
    raise syntax('unknown field-table value tag %r' % chr(tag))


#: Fixed-size numeric tags: tag -> (unpack_from, size).
_FIXED: Dict[int, Tuple[Callable[[bytes, int], Tuple[Union[int, float]]],
                       int]] = {
    ord('I'): (_I32.unpack_from, 4), ord('l'): (_I64.unpack_from, 8),
    ord('b'): (_I8.unpack_from, 1), ord('s'): (_I16.unpack_from, 2),
    ord('u'): (_U16.unpack_from, 2), ord('i'): (_U32.unpack_from, 4),
    ord('d'): (_F64.unpack_from, 8), ord('f'): (_F32.unpack_from, 4),
    # The 0-9-1 PDF's letters for signed 64- and 16-bit ints: py-amqp
    # writes 'L' for every int beyond 32 bits, so a consumer of a
    # py-amqp publisher must read it (signed, as py-amqp and pika do).
    ord('L'): (_I64.unpack_from, 8), ord('U'): (_I16.unpack_from, 2),
}


def dec_table(buf: bytes, offset: int, end: int,
               depth: int = 0) -> Tuple[FieldTable, int]:
    if depth > MAX_NESTING:
        raise syntax('tables nested deeper than %d' % MAX_NESTING)
    tend = offset + 4 + _u32_from(buf, offset)[0]
    offset += 4
    if tend > end:
        raise syntax('table of %d bytes runs past the end of its frame'
                      % (tend - offset))
    result: FieldTable = {}
    while offset < tend:
        start = offset + 1
        offset = start + buf[offset]
        if offset >= tend:
            raise syntax('table entry runs past the end of its table')
        try:  # strict UTF-8 first: the argument-free call is the fast one
            key = buf[start:offset].decode()
        except UnicodeDecodeError:
            key = buf[start:offset].decode('utf-8', 'surrogateescape')
        tag = buf[offset]
        if tag == 83:  # 'S', the commonest value
            start = offset + 5
            offset = start + _u32_from(buf, start - 4)[0]
            if offset > tend:
                raise syntax('longstr of %d bytes runs past its table'
                              % (offset - start))
            raw = buf[start:offset]
            try:
                result[key] = raw.decode()
            except UnicodeDecodeError:
                result[key] = raw
        elif tag == 73:  # 'I'
            result[key] = _i32_from(buf, offset + 1)[0]
            offset += 5
        else:
            result[key], offset = _dec_value(buf, offset, tend, depth)
    if offset != tend:
        raise syntax('table value runs past the table length')
    return result, offset


def dec_array(buf: bytes, offset: int, end: int,
               depth: int = 0) -> Tuple[List[FieldValue], int]:
    if depth > MAX_NESTING:
        raise syntax('arrays nested deeper than %d' % MAX_NESTING)
    n, = _U32.unpack_from(buf, offset)
    offset += 4
    aend = offset + n
    if aend > end:
        raise syntax('array of %d bytes runs past the end of its frame' % n)
    result: List[FieldValue] = []
    append = result.append
    while offset < aend:
        value, offset = _dec_value(buf, offset, aend, depth)
        append(value)
    if offset != aend:
        raise syntax('array value runs past the array length')
    return result, offset


DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError)


def decode_table(buf: Buffer, offset: int = 0) -> Tuple[FieldTable, int]:
    """Decode a length-prefixed field table; returns (dict, offset)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    try:
        return dec_table(buf, offset, len(buf))
    except FrameSyntaxError:
        raise
    except DECODE_ERRORS as exc:
        raise syntax('truncated field table (%s)' % exc) from None
