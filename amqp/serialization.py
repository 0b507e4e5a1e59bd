"""AMQP 0-9-1 value encoding: method arguments and content properties
(field values and tables: :mod:`amqp.tables`).

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

import linecache
import os
import struct
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from . import spec
from .exceptions import FrameSyntaxError
from .tables import (DECODE_ERRORS, MAX_NESTING, OCTETS, Buffer,  # noqa: F401
                     EncodableTable, EncodableValue, FieldTable, FieldValue,
                     dec_array, dec_str, dec_table, dec_timestamp,
                     decode_table, enc_array_body, enc_longstr, enc_shortstr,
                     enc_table_body, enc_timestamp, encode_table, str_bytes,
                     syntax)

__all__ = ('loads', 'dumps', 'dumps_method', 'method_encoder',
           'encode_table', 'decode_table',
           'encode_properties_basic', 'decode_properties_basic',
           'encode_header_frame_payload', 'BASIC_PROPERTY_NAMES',
           'FieldValue', 'FieldTable', 'EncodableValue', 'EncodableTable',
           'Encoder', 'Decoder', 'Buffer')

#: A generated method-argument encoder: values in format order -> bytes.
Encoder = Callable[[Sequence[EncodableValue]], bytes]
#: A generated decoder: ``decode(buf, offset) -> (values, end offset)``.
Decoder = Callable[[bytes, int], Tuple[List[FieldValue], int]]
#: A generated content-properties encoder.
PropertiesEncoder = Callable[[Mapping[str, EncodableValue]], bytes]

_U8 = struct.Struct('>B')
_U16 = struct.Struct('>H')
_U32 = struct.Struct('>I')
_U64 = struct.Struct('>Q')
_F32 = struct.Struct('>f')
# content header: class id, weight, body size
_HEADER_PREFIX = struct.Struct('>HHQ')

_INT_LIMITS: Dict[str, Tuple[int, int, str]] = {
    'o': (0, 0xFF, 'octet'),
    'B': (0, 0xFFFF, 'short'),
    'l': (0, 0xFFFFFFFF, 'long'),
    'L': (0, 0xFFFFFFFFFFFFFFFF, 'longlong'),
}

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
    'enc_shortstr': enc_shortstr, 'enc_longstr': enc_longstr,
    'encode_table': encode_table, 'enc_array_body': enc_array_body,
    'enc_timestamp': enc_timestamp, '_check_int': None, 'dec_str': dec_str,
    'dec_table': dec_table, 'dec_array': dec_array,
    'dec_timestamp': dec_timestamp, 'syntax': syntax,
    'FrameSyntaxError': FrameSyntaxError, 'DECODE_ERRORS': DECODE_ERRORS,
    'OCTETS': OCTETS, 'str_bytes': str_bytes, '_BITS': _BITS,
    'enc_table_body': enc_table_body,
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
                parts.append('OCTETS[%s]' % expr)
                continue
            f = _field_name(names, idx)
            if kind in 'oBlL':
                lines.append('    if type(v{0}) is not int or not 0 <= v{0} '
                             '<= {1}: v{0} = _check_int(v{0}, {2!r}, {3!r})'
                             .format(idx, _INT_LIMITS[kind][1], kind, f))
                if kind == 'o':
                    parts.append('OCTETS[v%d]' % idx)
                else:
                    pk = {'B': '_U16', 'l': '_U32', 'L': '_U64'}[kind]
                    parts.append('%s.pack(v%d)' % (pk, idx))
            elif kind == 'f':
                parts.append('_enc_float(v%d, %r)' % (idx, f))
            elif kind == 's':
                # Inline fast path for str; anything unusual goes through
                # enc_shortstr, which raises the error naming the field.
                lines.append('    if type(v{0}) is str:'.format(idx))
                lines.append('        try:')
                lines.append('            v{0} = v{0}.encode()'.format(idx))
                lines.append('        except UnicodeEncodeError:')
                lines.append('            v{0} = str_bytes(v{0}, {1!r})'
                             .format(idx, f))
                lines.append('    else:')
                lines.append('        v{0} = str_bytes(v{0}, {1!r})'
                             .format(idx, f))
                lines.append('    if len(v{0}) > 255: enc_shortstr(v{0}, '
                             '{1!r})'.format(idx, f))
                parts.append('OCTETS[len(v%d)]' % idx)
                parts.append('v%d' % idx)
            elif kind in 'Sx':
                parts.append('enc_longstr(v%d, %r)' % (idx, f))
            elif kind == 'F':
                parts.append('(enc_table_body(v{0}, {1!r}) if type(v{0}) is '
                             'dict else encode_table(v{0}, {1!r}))'
                             .format(idx, f))
            elif kind == 'A':
                parts.append('enc_array_body(v%d or (), %r)' % (idx, f))
            elif kind == 'T':
                parts.append('enc_timestamp(v%d, %r)' % (idx, f))
        lines.append('    return b"".join((%s,))' % ', '.join(parts))
    encode: Encoder = _generate('encode', lines, 'encoder %s%s' % (
        fmt, ' (%s)' % ', '.join(names) if names else ''))
    twins = globals().get('speedups')   # (None until it is loaded)
    if twins is not None and fmt and not fmt.strip('oBlLbs'):
        # integers, bits and shortstrs: the compiled twin, which gives any
        # other value to the generated encoder
        compiled: Encoder = twins.ArgsEncoder(fmt, encode)
        return compiled
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
            lines.append('        if offset + n > end: raise syntax('
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
            lines.append('        if n > end - offset: raise syntax('
                         '"longstr of %d bytes runs past the end of the '
                         'frame" % n)')
            conv = 'dec_str' if kind == 'S' else ''
            lines.append('        %s = %s(buf[offset:offset + n]); '
                         'offset += n' % (v, conv))
        elif kind == 'F':
            lines.append('        %s, offset = dec_table(buf, offset, end)'
                         % v)
        elif kind == 'A':
            lines.append('        %s, offset = dec_array(buf, offset, end)'
                         % v)
        elif kind == 'T':
            lines.append('        %s = dec_timestamp(_U64.unpack_from(buf, '
                         'offset)[0]); offset += 8' % v)
    lines.append('    except FrameSyntaxError:')
    lines.append('        raise')
    lines.append('    except DECODE_ERRORS as exc:')
    lines.append('        raise syntax("truncated arguments for format %s '
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
    """Return the cached decoder for ``fmt``: the generated one, or its
    compiled twin when :data:`speedups` is set (see :func:`decoder_for_py`)."""
    try:
        return _DECODERS[fmt]
    except KeyError:
        dec = decoder_for_py(fmt)
        if speedups is not None:
            dec = speedups.ArgsDecoder(fmt, dec)
        _DECODERS[fmt] = dec
        return dec


def decoder_for_py(fmt: str) -> Decoder:
    """The pure-Python decoder for ``fmt`` (the specification of its
    compiled twin), cached."""
    try:
        return _PY_DECODERS[fmt]
    except KeyError:
        dec = _PY_DECODERS[fmt] = _compile_decoder(fmt)
        return dec


_PY_DECODERS: Dict[str, Decoder] = {}


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
                '                v = str_bytes(v, %r)' % name,
                '        else:',
                '            v = str_bytes(v, %r)' % name,
                '        if len(v) > 255: enc_shortstr(v, %r)' % name,
                '        parts.append(OCTETS[len(v)])',
                '        parts.append(v)',
            ))
        elif fmt == 'o':
            lines.append('        if type(v) is not int or not 0 <= v <= 255:'
                         ' v = _check_int(v, "o", %r)' % name)
            lines.append('        parts.append(OCTETS[v])')
        elif fmt == 'F':
            lines.append('        parts.append(enc_table_body(v, {0!r}) if '
                         'type(v) is dict else encode_table(v, {0!r}))'
                         .format(name))
        else:
            lines.append('        parts.append(enc_timestamp(v, %r))' % name)
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


def decode_properties_basic_py(
        buf: Buffer, offset: int = 0
) -> Tuple[Dict[str, EncodableValue], int]:
    """Decode basic content properties; returns (dict, offset).

    The pure-Python specification of :func:`decode_properties_basic`
    (which is this function, or its compiled twin in
    ``amqp._speedups``).

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
                    raise syntax('unknown basic property flags 0x%04x'
                                  % extra)
                more = extra & 1
            if flags & 0x0002:
                raise syntax('unknown basic property flag 0x0002')
            flags &= 0xFFFC
        props: Dict[str, EncodableValue] = {}
        if flags:
            plan = _PLANS.get(flags) or _property_plan(flags)
            for name, fmt in plan:
                if fmt == 's':
                    n = buf[offset]
                    offset += 1
                    if offset + n > end:
                        raise syntax('property %s runs past the end of '
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
                    props[name], offset = dec_table(buf, offset, end)
                else:  # 'T': seconds as an int, as py-amqp returns it
                    props[name], = _U64.unpack_from(buf, offset)
                    offset += 8
        return props, offset
    except FrameSyntaxError:
        raise
    except DECODE_ERRORS as exc:
        raise syntax('truncated content header (%s)' % exc) from None


#: (properties, offset) from a content header's property part
PropertiesDecoder = Callable[[Buffer, int], Tuple[Dict[str, EncodableValue],
                                                  int]]


def _load_speedups() -> Any:
    """The compiled twins (``amqp._speedups``), configured; None when they
    were not built or ``AMQP_NO_SPEEDUPS`` is set (to anything but 0)."""
    if os.environ.get('AMQP_NO_SPEEDUPS', '') not in ('', '0'):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    _speedups.configure(tuple((name, fmt) for name, fmt, _ in _PROP_FLAGS),
                        dec_table, decode_properties_basic_py)
    _speedups.configure_args(dec_str, dec_array, dec_timestamp)
    return _speedups


#: The compiled twins in use (``amqp._speedups``), or None: the pure path.
#: Chosen once, at import.
speedups = _load_speedups()

#: Decode basic content properties; returns (dict, offset).  Raises
#: FrameSyntaxError on malformed input.  (The compiled twin when
#: :data:`speedups` is set, else :func:`decode_properties_basic_py`.)
decode_properties_basic: PropertiesDecoder = \
    decode_properties_basic_py if speedups is None else \
    speedups.decode_properties_basic


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
        raise syntax('content header frame shorter than 14 bytes') from None
    if class_id != spec.Basic.CLASS_ID:
        raise syntax('content header for class %d; only basic (60) carries '
                      'content' % class_id)
    props, _ = decode_properties_basic(buf, offset + 12)
    return class_id, body_size, props
