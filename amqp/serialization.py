"""AMQP 0-9-1 value encoding: method arguments, field tables, properties.

Pure functions, no I/O.  ``loads(format, buf, offset)`` returns
``(values, offset)``; ``dumps(format, values)`` returns ``bytes``.

Format letters (py-amqp's): ``b`` bit, ``o`` octet, ``B`` short (u16),
``l`` long (u32), ``L`` longlong (u64), ``f`` float (32-bit), ``s``
shortstr, ``S`` longstr, ``x`` longstr given/returned as bytes, ``F`` field
table, ``A`` field array, ``T`` timestamp.  Consecutive bits share an octet.

For every format a specialised encoder and decoder is generated once (the
argument layout of a method never changes), which is what makes method
encoding several times cheaper than a per-letter interpreter loop.  Content
properties get the same treatment per set of property names a publisher
uses, and encoded table keys are remembered (both caches are bounded).
Validation is never skipped: a fast path that meets anything unusual falls
back to the general code, which raises the error naming the field.

Field-table value tags follow what RabbitMQ really sends and accepts (its
"AMQP 0-9-1 errata" page), not the 0-9-1 PDF: signed ``b s I l``, unsigned
``B u i``, plus ``t f d D S x A T F V``; decoding also reads ``L`` and
``U`` as signed 64/16-bit ints, as py-amqp (which writes ``L``) does.

Encoding picks the tags py-amqp 5.x picks, so a consumer on either library
decodes the same values whichever published: ``str`` and ``bytes`` as
``S``, ``bool`` ``t``, ``int`` ``I`` (32-bit) else 64-bit, ``float`` ``d``,
``Decimal`` ``D``, ``datetime`` ``T``, ``dict`` ``F``, ``list``/``tuple``
``A``, None ``V``, subclasses as their base.  Deliberate differences
(docs/migration.rst): 64-bit ints go as ``l`` (RabbitMQ's signed
long-long; py-amqp writes ``L``, which decodes to the same value), -2**31
fits ``I``, ``bytearray``/``memoryview`` go as ``x`` (py-amqp refuses
them), and a lone surrogate that did not come from undecodable input is a
ValueError rather than invalid UTF-8 on the wire.

Decoding errors never escape as ``struct.error``/``IndexError``/
``UnicodeDecodeError``: they become :class:`~amqp.exceptions.FrameSyntaxError`.
Encoding errors from bad caller input are ``TypeError``/``ValueError``
naming the field, raised before anything reaches the wire.
"""
from __future__ import annotations

import calendar
import linecache
import struct
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from . import spec
from .exceptions import FrameSyntaxError

__all__ = ('loads', 'dumps', 'dumps_method', 'method_encoder',
           'encode_table', 'decode_table',
           'encode_properties_basic', 'decode_properties_basic',
           'encode_header_frame_payload', 'BASIC_PROPERTY_NAMES',
           'FieldValue', 'FieldTable', 'EncodableValue', 'EncodableTable',
           'Encoder', 'Decoder', 'Buffer')

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
#: A generated method-argument encoder: values in format order -> bytes.
Encoder = Callable[[Sequence[EncodableValue]], bytes]
#: A generated decoder: ``decode(buf, offset) -> (values, end offset)``.
Decoder = Callable[[bytes, int], Tuple[List[FieldValue], int]]
#: A generated content-properties encoder.
PropertiesEncoder = Callable[[Mapping[str, EncodableValue]], bytes]
#: How an error message names a value: a field name, or (container, key)
#: formatted only when the error is raised.
_Field = Union[str, Tuple[str, object]]

_I8 = struct.Struct('>b')
_U8 = struct.Struct('>B')
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
# content header: class id, weight, body size
_HEADER_PREFIX = struct.Struct('>HHQ')

#: Deepest nesting of tables/arrays we decode; a peer cannot make us recurse
#: until RecursionError.
MAX_NESTING = 64

_EPOCH = datetime(1970, 1, 1)

_INT_LIMITS: Dict[str, Tuple[int, int, str]] = {
    'o': (0, 0xFF, 'octet'),
    'B': (0, 0xFFFF, 'short'),
    'l': (0, 0xFFFFFFFF, 'long'),
    'L': (0, 0xFFFFFFFFFFFFFFFF, 'longlong'),
}


def _syntax(what: object) -> FrameSyntaxError:
    return FrameSyntaxError('malformed frame: %s' % (what,))


# ---------------------------------------------------------------------------
# Strings

#: One-octet strings by value: shortstr length prefixes and bit octets.
_OCTETS = tuple(bytes((i,)) for i in range(256))


def _str_bytes(value: object, field: str) -> bytes:
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


def _enc_shortstr(value: object, field: str) -> bytes:
    if type(value) is str:
        try:
            raw = value.encode()
        except UnicodeEncodeError:
            raw = _str_bytes(value, field)
    else:
        raw = _str_bytes(value, field)
    n = len(raw)
    if n > 255:
        raise ValueError('%s is %d bytes long; a shortstr holds at most 255'
                         % (field, n))
    return _OCTETS[n] + raw


def _enc_longstr(value: object, field: str) -> bytes:
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


def _dec_str(raw: bytes) -> str:
    """Decode UTF-8 text from the wire; undecodable bytes survive a
    round trip through ``surrogateescape`` instead of raising."""
    return raw.decode('utf-8', 'surrogateescape')


def _dec_table_str(raw: bytes) -> Union[str, bytes]:
    """A longstr inside a table: text if it is UTF-8, else bytes (RabbitMQ
    uses the same tag for both)."""
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError:
        return raw


# ---------------------------------------------------------------------------
# Timestamps

def _enc_timestamp(value: object, field: str) -> bytes:
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


def _dec_timestamp(secs: int) -> datetime:
    """Naive UTC datetime (py-amqp's choice), clamped to datetime's range."""
    try:
        return datetime.fromtimestamp(secs, timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        raise _syntax('timestamp %d out of range' % secs) from None


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


def _enc_value(v: EncodableValue, field: _Field, depth: int = 0) -> bytes:
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
        return b'F' + _enc_table_body(
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
        return b'A' + _enc_array_body(v, _name(field), depth + 1)
    if isinstance(v, datetime):
        return b'T' + _enc_timestamp(v, _name(field))
    if isinstance(v, Decimal):
        return _enc_decimal(v, _name(field))
    if isinstance(v, bool):
        return b't\x01' if v else b't\x00'
    if isinstance(v, int):
        return _enc_value(int(v), field, depth)
    if isinstance(v, str):  # its text, not its str() (a str Enum)
        return _enc_value(str.__str__(v), field, depth)
    if isinstance(v, dict):
        return b'F' + _enc_table_body(v, _name(field), depth + 1)
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
    prefixed = _OCTETS[len(kb)] + kb
    if cache:
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[k] = prefixed
    return prefixed


def _enc_table_body(d: EncodableTable, field: str = 'table',
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
            append(_enc_value(v, (field, k), depth))
    body = b''.join(parts)
    return _u32_pack(len(body)) + body




def _enc_array_body(items: Sequence[EncodableValue], field: str = 'array',
                    depth: int = 0) -> bytes:
    if depth > MAX_NESTING:
        raise ValueError('%s: arrays nested deeper than %d'
                         % (field, MAX_NESTING))
    body = b''.join([_enc_value(v, (field, i), depth)
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
    return _enc_table_body(d, field)


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
            raise _syntax('longstr of %d bytes runs past its table' % n)
        raw = buf[offset:offset + n]
        return (_dec_table_str(raw) if tag == 83 else raw), offset + n
    if tag == 70:  # 'F'
        return _dec_table(buf, offset, end, depth + 1)
    if tag == 116:  # 't'
        return buf[offset] != 0, offset + 1
    if tag == 65:  # 'A'
        return _dec_array(buf, offset, end, depth + 1)
    if tag == 84:  # 'T'
        return _dec_timestamp(_U64.unpack_from(buf, offset)[0]), offset + 8
    if tag == 86:  # 'V'
        return None, offset
    if tag == 66:  # 'B'
        return buf[offset], offset + 1
    if tag == 68:  # 'D'
        scale, value = _DECIMAL.unpack_from(buf, offset)
        return Decimal(value).scaleb(-scale), offset + 5
    raise _syntax('unknown field-table value tag %r' % chr(tag))


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


def _dec_table(buf: bytes, offset: int, end: int,
               depth: int = 0) -> Tuple[FieldTable, int]:
    if depth > MAX_NESTING:
        raise _syntax('tables nested deeper than %d' % MAX_NESTING)
    tend = offset + 4 + _u32_from(buf, offset)[0]
    offset += 4
    if tend > end:
        raise _syntax('table of %d bytes runs past the end of its frame'
                      % (tend - offset))
    result: FieldTable = {}
    while offset < tend:
        start = offset + 1
        offset = start + buf[offset]
        if offset >= tend:
            raise _syntax('table entry runs past the end of its table')
        try:  # strict UTF-8 first: the argument-free call is the fast one
            key = buf[start:offset].decode()
        except UnicodeDecodeError:
            key = buf[start:offset].decode('utf-8', 'surrogateescape')
        tag = buf[offset]
        if tag == 83:  # 'S', the commonest value
            start = offset + 5
            offset = start + _u32_from(buf, start - 4)[0]
            if offset > tend:
                raise _syntax('longstr of %d bytes runs past its table'
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
        raise _syntax('table value runs past the table length')
    return result, offset


def _dec_array(buf: bytes, offset: int, end: int,
               depth: int = 0) -> Tuple[List[FieldValue], int]:
    if depth > MAX_NESTING:
        raise _syntax('arrays nested deeper than %d' % MAX_NESTING)
    n, = _U32.unpack_from(buf, offset)
    offset += 4
    aend = offset + n
    if aend > end:
        raise _syntax('array of %d bytes runs past the end of its frame' % n)
    result: List[FieldValue] = []
    append = result.append
    while offset < aend:
        value, offset = _dec_value(buf, offset, aend, depth)
        append(value)
    if offset != aend:
        raise _syntax('array value runs past the array length')
    return result, offset


_DECODE_ERRORS = (struct.error, IndexError, ValueError, OverflowError)


def decode_table(buf: Buffer, offset: int = 0) -> Tuple[FieldTable, int]:
    """Decode a length-prefixed field table; returns (dict, offset)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    try:
        return _dec_table(buf, offset, len(buf))
    except FrameSyntaxError:
        raise
    except _DECODE_ERRORS as exc:
        raise _syntax('truncated field table (%s)' % exc) from None


# ---------------------------------------------------------------------------
# Method arguments: per-format generated codecs

def _split_format(fmt: str) -> List[Tuple[str, Union[int, List[int]]]]:
    """Yield (letter, index) groups; runs of 'b' come as ('bits', [idx])."""
    groups: List[Tuple[str, Union[int, List[int]]]] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == 'b':
            run: List[int] = []
            while i < len(fmt) and fmt[i] == 'b' and len(run) < 8:
                run.append(i)
                i += 1
            groups.append(('bits', run))
            continue
        if c not in 'oBlLfsSxFAT':
            raise ValueError('unknown serialization format letter %r' % c)
        groups.append((c, i))
        i += 1
    return groups


#: _BITS[n][octet]: the first n bits of an octet as booleans, LSB first.
_BITS: List[Optional[Tuple[Tuple[bool, ...], ...]]] = [None] + [
    tuple(tuple(bool(octet & (1 << k)) for k in range(n))
          for octet in range(256)) for n in range(1, 9)]

_GEN_GLOBALS: Dict[str, object] = {
    '_U8': _U8, '_U16': _U16, '_U32': _U32, '_U64': _U64, '_F32': _F32,
    '_enc_shortstr': _enc_shortstr, '_enc_longstr': _enc_longstr,
    'encode_table': encode_table, '_enc_array_body': _enc_array_body,
    '_enc_timestamp': _enc_timestamp, '_check_int': None, '_dec_str': _dec_str,
    '_dec_table': _dec_table, '_dec_array': _dec_array,
    '_dec_timestamp': _dec_timestamp, '_syntax': _syntax,
    'FrameSyntaxError': FrameSyntaxError, '_DECODE_ERRORS': _DECODE_ERRORS,
    '_OCTETS': _OCTETS, '_str_bytes': _str_bytes, '_BITS': _BITS,
    '_enc_table_body': _enc_table_body,
}


def _check_int(value: object, letter: str, field: str) -> int:
    lo, hi, name = _INT_LIMITS[letter]
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            if value is None:
                return 0
            raise TypeError('%s must be an int (AMQP %s), not %s'
                            % (field, name, type(value).__name__))
        value = int(value)
    if not lo <= value <= hi:
        raise ValueError('%s=%d is out of range for an AMQP %s (%d..%d)'
                         % (field, value, name, lo, hi))
    return value


def _enc_float(value: float, field: str) -> bytes:
    try:
        return _F32.pack(value)
    except struct.error:
        raise TypeError('%s must be a float, not %s'
                        % (field, type(value).__name__)) from None
    except OverflowError:
        raise ValueError('%s=%r does not fit a 32-bit float'
                         % (field, value)) from None


def _check_bit(value: object, field: str) -> bool:
    """A flag: bool, or an int (py-amqp accepted 0/1); None is False."""
    if value is None or isinstance(value, int):
        return bool(value)
    raise TypeError('%s must be a bool, not %s'
                    % (field, type(value).__name__))


_GEN_GLOBALS['_check_int'] = _check_int
_GEN_GLOBALS['_check_bit'] = _check_bit
_GEN_GLOBALS['_enc_float'] = _enc_float


def _generate(name: str, lines: List[str], what: str) -> Any:
    """Compile generated source and return its function ``name``.

    The source gets a file name of its own, registered with linecache, so
    a traceback through a generated codec shows the line that failed.
    Returns Any: the caller gives the function its ``Callable`` type
    (:data:`Encoder`, :data:`Decoder`, :data:`PropertiesEncoder`).
    """
    source = '\n'.join(lines) + '\n'
    filename = '<amqp.serialization: %s>' % what
    linecache.cache[filename] = (len(source), None,
                                 source.splitlines(True), filename)
    ns: Dict[str, Any] = {}
    exec(compile(source, filename, 'exec'), _GEN_GLOBALS, ns)  # noqa: S102
    return ns[name]


def _field_name(names: Optional[Sequence[str]], i: int) -> str:
    return names[i] if names and i < len(names) else 'argument %d' % i


def _compile_encoder(fmt: str,
                     names: Optional[Sequence[str]] = None) -> Encoder:
    lines = ['def encode(values):']
    n = len(fmt)
    if n == 0:
        lines.append('    return b""')
    else:
        lines.append('    if len(values) != %d:' % n)
        lines.append('        raise TypeError("expected %d values for format '
                     '%s, got %%d" %% len(values))' % (n, fmt))
        lines.append('    %s, = values' % ', '.join('v%d' % i
                                                   for i in range(n)))
        parts = []
        for kind, idx in _split_format(fmt):
            if isinstance(idx, list):  # a run of bits
                for i in idx:
                    lines.append('    if v{0}.__class__ is not bool: v{0} = '
                                 '_check_bit(v{0}, {1!r})'
                                 .format(i, _field_name(names, i)))
                expr = ' | '.join('(%d if v%d else 0)' % (1 << k, i)
                                  for k, i in enumerate(idx))
                parts.append('_OCTETS[%s]' % expr)
                continue
            f = _field_name(names, idx)
            if kind in 'oBlL':
                lines.append('    if type(v{0}) is not int or not 0 <= v{0} '
                             '<= {1}: v{0} = _check_int(v{0}, {2!r}, {3!r})'
                             .format(idx, _INT_LIMITS[kind][1], kind, f))
                if kind == 'o':
                    parts.append('_OCTETS[v%d]' % idx)
                else:
                    pk = {'B': '_U16', 'l': '_U32', 'L': '_U64'}[kind]
                    parts.append('%s.pack(v%d)' % (pk, idx))
            elif kind == 'f':
                parts.append('_enc_float(v%d, %r)' % (idx, f))
            elif kind == 's':
                # Inline fast path for str; anything unusual goes through
                # _enc_shortstr, which raises the error naming the field.
                lines.append('    if type(v{0}) is str:'.format(idx))
                lines.append('        try:')
                lines.append('            v{0} = v{0}.encode()'.format(idx))
                lines.append('        except UnicodeEncodeError:')
                lines.append('            v{0} = _str_bytes(v{0}, {1!r})'
                             .format(idx, f))
                lines.append('    else:')
                lines.append('        v{0} = _str_bytes(v{0}, {1!r})'
                             .format(idx, f))
                lines.append('    if len(v{0}) > 255: _enc_shortstr(v{0}, '
                             '{1!r})'.format(idx, f))
                parts.append('_OCTETS[len(v%d)]' % idx)
                parts.append('v%d' % idx)
            elif kind in 'Sx':
                parts.append('_enc_longstr(v%d, %r)' % (idx, f))
            elif kind == 'F':
                parts.append('(_enc_table_body(v{0}, {1!r}) if type(v{0}) is '
                             'dict else encode_table(v{0}, {1!r}))'
                             .format(idx, f))
            elif kind == 'A':
                parts.append('_enc_array_body(v%d or (), %r)' % (idx, f))
            elif kind == 'T':
                parts.append('_enc_timestamp(v%d, %r)' % (idx, f))
        lines.append('    return b"".join((%s,))' % ', '.join(parts))
    encode: Encoder = _generate('encode', lines, 'encoder %s%s' % (
        fmt, ' (%s)' % ', '.join(names) if names else ''))
    return encode


def _compile_decoder(fmt: str) -> Decoder:
    lines = ['def decode(buf, offset):',
             '    try:',
             '        end = len(buf)']
    out: List[int] = []
    for kind, idx in _split_format(fmt):
        if isinstance(idx, list):  # a run of bits
            # one look-up gives the run's booleans (bits above it ignored)
            lines.append('        %s, = _BITS[%d][buf[offset]]; offset += 1'
                         % (', '.join('v%d' % i for i in idx), len(idx)))
            out.extend(idx)
            continue
        out.append(idx)
        v = 'v%d' % idx
        if kind == 'o':
            lines.append('        %s = buf[offset]; offset += 1' % v)
        elif kind in 'BlLf':
            pk, size = {'B': ('_U16', 2), 'l': ('_U32', 4), 'L': ('_U64', 8),
                        'f': ('_F32', 4)}[kind]
            lines.append('        %s, = %s.unpack_from(buf, offset); '
                         'offset += %d' % (v, pk, size))
        elif kind == 's':
            lines.append('        n = buf[offset]; offset += 1')
            lines.append('        if offset + n > end: raise _syntax('
                         '"shortstr runs past the end of the frame")')
            lines.append('        raw = buf[offset:offset + n]; offset += n')
            lines.append('        try:')
            lines.append('            %s = raw.decode()' % v)
            lines.append('        except UnicodeDecodeError:')
            lines.append('            %s = raw.decode("utf-8", '
                         '"surrogateescape")' % v)
        elif kind in 'Sx':
            lines.append('        n, = _U32.unpack_from(buf, offset); '
                         'offset += 4')
            lines.append('        if n > end - offset: raise _syntax('
                         '"longstr of %d bytes runs past the end of the '
                         'frame" % n)')
            conv = '_dec_str' if kind == 'S' else ''
            lines.append('        %s = %s(buf[offset:offset + n]); '
                         'offset += n' % (v, conv))
        elif kind == 'F':
            lines.append('        %s, offset = _dec_table(buf, offset, end)'
                         % v)
        elif kind == 'A':
            lines.append('        %s, offset = _dec_array(buf, offset, end)'
                         % v)
        elif kind == 'T':
            lines.append('        %s = _dec_timestamp(_U64.unpack_from(buf, '
                         'offset)[0]); offset += 8' % v)
    lines.append('    except FrameSyntaxError:')
    lines.append('        raise')
    lines.append('    except _DECODE_ERRORS as exc:')
    lines.append('        raise _syntax("truncated arguments for format %s '
                 '(%%s)" %% (exc,)) from None' % fmt)
    lines.append('    return [%s], offset' % ', '.join('v%d' % i
                                                       for i in sorted(out)))
    decode: Decoder = _generate('decode', lines, 'decoder %s' % fmt)
    return decode


#: format -> encoder; looked up with the format as given, bytes included
_ENCODERS: Dict[Union[str, bytes], Encoder] = {}
_DECODERS: Dict[Union[str, bytes], Decoder] = {}


def _argument_names() -> Dict[str, Tuple[str, ...]]:
    """Field names per format, for error messages.

    Methods sharing a format may call a position differently (exchange.bind
    'destination', queue.bind 'queue'); such a position is named by all its
    names ('destination/queue') so an error never names the wrong field.
    """
    names: Dict[str, List[List[str]]] = {}
    for m in spec.METHODS.values():
        seen = names.setdefault(m.args, [[] for _ in m.args])
        for position, name in zip(seen, m.arg_names):
            if name not in position:
                position.append(name)
    return {fmt: tuple('/'.join(n) for n in positions)
            for fmt, positions in names.items()}


_ARG_NAMES = _argument_names()


def encoder_for(fmt: str, names: Optional[Sequence[str]] = None) -> Encoder:
    """Return the cached generated encoder for ``fmt``."""
    try:
        return _ENCODERS[fmt]
    except KeyError:
        enc = _ENCODERS[fmt] = _compile_encoder(
            fmt, names or _ARG_NAMES.get(fmt))
        return enc


#: (method signature, format) -> encoder naming that method's fields
_METHOD_ENCODERS: Dict[Tuple[spec.MethodSig, str], Encoder] = {}


def dumps_method(method_sig: spec.MethodSig, format: str,
                 values: Sequence[EncodableValue]) -> bytes:
    """Serialize the arguments of method ``method_sig`` by ``format``.

    Errors name the method's own fields (``queue``, ``exchange``); the
    codec for a format shared by several methods would name them all.
    """
    key = (method_sig, format)
    enc = _METHOD_ENCODERS.get(key)
    if enc is None:
        method = spec.METHODS.get(method_sig)
        if method is None or method.args != format:
            return dumps(format, values)
        enc = _METHOD_ENCODERS[key] = _compile_encoder(
            format, tuple(method.arg_names))
    return enc(values)


def method_encoder(method_sig: spec.MethodSig) -> Encoder:
    """The encoder of method ``method_sig``'s arguments (its spec format,
    errors naming its fields), for callers that encode it often."""
    method = spec.METHODS[method_sig]
    key = (method_sig, method.args)
    enc = _METHOD_ENCODERS.get(key)
    if enc is None:
        enc = _METHOD_ENCODERS[key] = _compile_encoder(
            method.args, tuple(method.arg_names))
    return enc


def decoder_for(fmt: str) -> Decoder:
    """Return the cached generated decoder for ``fmt``."""
    try:
        return _DECODERS[fmt]
    except KeyError:
        dec = _DECODERS[fmt] = _compile_decoder(fmt)
        return dec


def dumps(format: Union[str, bytes],
          values: Sequence[EncodableValue]) -> bytes:
    """Serialize ``values`` according to ``format``; returns bytes.

    Raises TypeError/ValueError naming the field for values that cannot be
    carried (too long, wrong type, out of range).
    """
    enc = _ENCODERS.get(format)
    if enc is None:
        if isinstance(format, bytes):
            format = format.decode('ascii')
        enc = encoder_for(format)
    return enc(values)


def loads(format: Union[str, bytes], buf: Buffer,
          offset: int = 0) -> Tuple[List[FieldValue], int]:
    """Deserialize ``buf`` from ``offset`` according to ``format``.

    Returns ``(values, offset)``.  Raises FrameSyntaxError on malformed or
    truncated input.
    """
    if type(buf) is not bytes:
        buf = bytes(buf)
    dec = _DECODERS.get(format)
    if dec is None:
        if isinstance(format, bytes):
            format = format.decode('ascii')
        dec = decoder_for(format)
    return dec(buf, offset)


# ---------------------------------------------------------------------------
# Content header properties (class basic)

BASIC_PROPERTY_NAMES = tuple(name for name, _ in spec.BASIC_PROPERTIES)
_PROP_FLAGS = tuple((name, fmt, 1 << (15 - i))
                    for i, (name, fmt) in enumerate(spec.BASIC_PROPERTIES))
#: name -> (position in flag order, flag bit, format letter)
_PROP_BY_NAME: Dict[str, Tuple[int, int, str]] = {name: (i, flag, fmt)
                 for i, (name, fmt, flag) in enumerate(_PROP_FLAGS)}


def encode_properties_basic(
        properties: Optional[Mapping[str, EncodableValue]]) -> bytes:
    """Encode basic content properties: flags word(s) + property list.

    Unknown property names and None values are ignored (py-amqp does the
    same: kombu passes extra keys).  Raises TypeError/ValueError naming the
    property when a value cannot be encoded.
    """
    if not properties:
        return b'\x00\x00'
    # A publisher sends the same set of property names again and again; one
    # generated encoder per set visits only those, already in flag order.
    shape = tuple(properties)
    try:
        encode = _PROP_SHAPES[shape]
    except KeyError:
        encode = _compile_properties_encoder(shape)
    return encode(properties)


#: tuple of property names, as given -> generated encoder; bounded.
_PROP_SHAPES: Dict[Tuple[str, ...], PropertiesEncoder] = {}
_PROP_SHAPES_MAX = 256


def _compile_properties_encoder(shape: Tuple[str, ...]) -> PropertiesEncoder:
    known = sorted((_PROP_BY_NAME[name] + (name,) for name in set(shape)
                    if name in _PROP_BY_NAME))
    lines = ['def encode(p):', '    flags = 0', '    parts = [None]']
    for _, flag, fmt, name in known:
        lines.append('    v = p[%r]' % name)
        lines.append('    if v is not None:')
        lines.append('        flags |= %d' % flag)
        if fmt == 's':  # inline fast path, as in the method encoders
            lines.extend((
                '        if type(v) is str:',
                '            try:',
                '                v = v.encode()',
                '            except UnicodeEncodeError:',
                '                v = _str_bytes(v, %r)' % name,
                '        else:',
                '            v = _str_bytes(v, %r)' % name,
                '        if len(v) > 255: _enc_shortstr(v, %r)' % name,
                '        parts.append(_OCTETS[len(v)])',
                '        parts.append(v)',
            ))
        elif fmt == 'o':
            lines.append('        if type(v) is not int or not 0 <= v <= 255:'
                         ' v = _check_int(v, "o", %r)' % name)
            lines.append('        parts.append(_OCTETS[v])')
        elif fmt == 'F':
            lines.append('        parts.append(_enc_table_body(v, {0!r}) if '
                         'type(v) is dict else encode_table(v, {0!r}))'
                         .format(name))
        else:
            lines.append('        parts.append(_enc_timestamp(v, %r))' % name)
    lines.append('    parts[0] = _U16.pack(flags)')
    lines.append('    return b"".join(parts)')
    encode: PropertiesEncoder = _generate('encode', lines, 'properties %s' % (
        ', '.join(name for _, _, _, name in known)))
    if len(_PROP_SHAPES) >= _PROP_SHAPES_MAX:
        _PROP_SHAPES.clear()
    _PROP_SHAPES[shape] = encode
    return encode


def _property_plan(flags: int) -> Tuple[Tuple[str, str], ...]:
    """(name, format letter) of the properties ``flags`` announces."""
    plan = _PLANS[flags] = tuple((name, fmt) for name, fmt, flag in _PROP_FLAGS
                                 if flags & flag)
    return plan


#: flags word -> plan; at most 2**14 distinct words, so no bound needed.
_PLANS: Dict[int, Tuple[Tuple[str, str], ...]] = {}


def decode_properties_basic(
        buf: Buffer, offset: int = 0
) -> Tuple[Dict[str, EncodableValue], int]:
    """Decode basic content properties; returns (dict, offset).

    The values are :data:`FieldValue` s; the dict is typed as one any
    encodable value may be stored in, since it becomes a message's
    ``properties``.
    """
    if type(buf) is not bytes:
        buf = bytes(buf)
    try:
        end = len(buf)
        flags, = _U16.unpack_from(buf, offset)
        offset += 2
        if flags & 0x0003:
            more = flags & 1
            while more:  # continuation words: no basic property lives there
                extra, = _U16.unpack_from(buf, offset)
                offset += 2
                if extra & 0xFFFE:
                    raise _syntax('unknown basic property flags 0x%04x'
                                  % extra)
                more = extra & 1
            if flags & 0x0002:
                raise _syntax('unknown basic property flag 0x0002')
            flags &= 0xFFFC
        props: Dict[str, EncodableValue] = {}
        if flags:
            plan = _PLANS.get(flags) or _property_plan(flags)
            for name, fmt in plan:
                if fmt == 's':
                    n = buf[offset]
                    offset += 1
                    if offset + n > end:
                        raise _syntax('property %s runs past the end of '
                                      'the frame' % name)
                    raw = buf[offset:offset + n]
                    offset += n
                    try:
                        props[name] = raw.decode()
                    except UnicodeDecodeError:
                        props[name] = raw.decode('utf-8', 'surrogateescape')
                elif fmt == 'o':
                    props[name] = buf[offset]
                    offset += 1
                elif fmt == 'F':
                    props[name], offset = _dec_table(buf, offset, end)
                else:  # 'T': seconds as an int, as py-amqp returns it
                    props[name], = _U64.unpack_from(buf, offset)
                    offset += 8
        return props, offset
    except FrameSyntaxError:
        raise
    except _DECODE_ERRORS as exc:
        raise _syntax('truncated content header (%s)' % exc) from None


def encode_header_frame_payload(
        body_size: int, properties: Optional[Mapping[str, EncodableValue]],
        class_id: int = spec.Basic.CLASS_ID) -> bytes:
    """Payload of a content header frame for a body of ``body_size``."""
    return (_HEADER_PREFIX.pack(class_id, 0, body_size) +
            encode_properties_basic(properties))


def decode_header_frame_payload(
        buf: Buffer, offset: int = 0
) -> Tuple[int, int, Dict[str, EncodableValue]]:
    """Return (class_id, body_size, properties) from a header payload
    (properties typed as in :func:`decode_properties_basic`)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    try:
        class_id, _weight, body_size = _HEADER_PREFIX.unpack_from(buf, offset)
    except struct.error:
        raise _syntax('content header frame shorter than 14 bytes') from None
    if class_id != spec.Basic.CLASS_ID:
        raise _syntax('content header for class %d; only basic (60) carries '
                      'content' % class_id)
    props, _ = decode_properties_basic(buf, offset + 12)
    return class_id, body_size, props
