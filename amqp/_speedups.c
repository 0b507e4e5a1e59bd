/* amqp._speedups: compiled twins of named pure functions of
 * amqp.serialization (docs/accelerator.rst).  Optional: the package is
 * complete without it, and the pure functions are the specification.
 *
 * Written against the stable ABI (Py_LIMITED_API 3.9): one build serves
 * every CPython from 3.9 on.  Everything that is protocol knowledge (which
 * property has which type) comes from Python through configure(); on any
 * malformed input the pure twin is called on the same arguments, so the
 * error raised is the pure path's own, class and message. */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <errno.h>
#include <limits.h>
#ifndef _WIN32
#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#endif

#ifndef PyBUF_WRITE
/* PyMemoryView_FromMemory's flag; in the limited API's headers from 3.11
 * on, with the value it has always had */
#define PyBUF_WRITE 0x200
#endif

/* Property bits 15..2 (bit 15 is the first property): name and format
 * letter, from configure(). */
static PyObject *prop_names[16];
static char prop_formats[16];
static PyObject *dec_table;      /* tables.dec_table(buf, offset, end) */
static PyObject *pure_twin;      /* serialization's pure decoder */
static PyObject *dec_str;        /* tables.dec_str(raw) */
static PyObject *dec_array;      /* tables.dec_array(buf, offset, end) */
static PyObject *dec_timestamp;  /* tables.dec_timestamp(seconds) */

/* The strings that repeat from message to message (content type, app id,
 * ...): the last value of each property is kept with its bytes and handed
 * out again when they match.  Only touched with the GIL held and without
 * running Python code in between. */
typedef struct {
    Py_ssize_t len;
    char bytes[255];
    PyObject *value;
} StrCache;

static StrCache caches[16];

static uint32_t u16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }

static uint64_t u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v = (v << 8) | p[k];
    return v;
}

static PyObject *shortstr(const char *at, Py_ssize_t len, StrCache *cache)
{
    if (cache->value != NULL && cache->len == len &&
        memcmp(cache->bytes, at, (size_t)len) == 0) {
        Py_INCREF(cache->value);
        return cache->value;
    }
    /* strict UTF-8 where valid; otherwise what the pure path's fallback
     * gives (surrogateescape), which is the same function of the bytes */
    PyObject *s = PyUnicode_DecodeUTF8(at, len, "surrogateescape");
    if (s == NULL)
        return NULL;
    Py_XDECREF(cache->value);
    Py_INCREF(s);
    cache->value = s;
    cache->len = len;
    memcpy(cache->bytes, at, (size_t)len);
    return s;
}

/* Call the pure twin: it raises the error this input deserves (or, for
 * input this code does not take, returns its result). */
static PyObject *pure(PyObject *buf, PyObject *offset)
{
    if (pure_twin == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "amqp._speedups not configured");
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(pure_twin, buf, offset, NULL);
}

/* Call a pure helper; NULL with the error cleared (so that the pure
 * decoder reports it) when it raised an Exception. */
static PyObject *helper(PyObject *fn, const char *argfmt, ...)
{
    va_list va;
    va_start(va, argfmt);
    PyObject *argtuple = Py_VaBuildValue(argfmt, va);
    va_end(va);
    if (argtuple == NULL)
        return NULL;
    if (!PyTuple_Check(argtuple)) {
        PyObject *one = PyTuple_Pack(1, argtuple);
        Py_DECREF(argtuple);
        if (one == NULL)
            return NULL;
        argtuple = one;
    }
    PyObject *r = PyObject_CallObject(fn, argtuple);
    Py_DECREF(argtuple);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_Exception))
        PyErr_Clear();
    return r;
}


/* One field of format letter ``c`` (not a bit) at b[*pi]: a new reference,
 * with *pi moved past it; or NULL, with *slow set (and no error) when the
 * input is for the pure decoder to judge, or with an error set.
 * ``raw_timestamp``: a 'T' is the seconds as an int (content properties)
 * rather than dec_timestamp's value (method arguments). */
static PyObject *decode_field(char c, PyObject *buf, const unsigned char *b,
                              Py_ssize_t *pi, Py_ssize_t end,
                              StrCache *cache, int raw_timestamp, int *slow)
{
    Py_ssize_t i = *pi;
    PyObject *v = NULL;
    Py_ssize_t need = c == 'o' || c == 's' ? 1 : c == 'B' ? 2 :
        c == 'l' || c == 'f' || c == 'S' || c == 'x' ? 4 :
        c == 'L' || c == 'T' ? 8 : 0;
    if (end - i < need) {
        *slow = 1;
        return NULL;
    }
    switch (c) {
    case 'o':
        v = PyLong_FromLong(b[i]);
        i += 1;
        break;
    case 'B':
        v = PyLong_FromLong((long)u16(b + i));
        i += 2;
        break;
    case 'l':
        v = PyLong_FromUnsignedLong(
            (unsigned long)((u16(b + i) << 16) | u16(b + i + 2)));
        i += 4;
        break;
    case 'L':
        v = PyLong_FromUnsignedLongLong(u64(b + i));
        i += 8;
        break;
    case 'f': {
        uint32_t raw = (u16(b + i) << 16) | u16(b + i + 2);
        float x;
        memcpy(&x, &raw, 4);
        v = PyFloat_FromDouble((double)x);
        i += 4;
        break;
    }
    case 's': {
        Py_ssize_t n = b[i];
        if (i + 1 + n > end) {
            *slow = 1;
            return NULL;
        }
        v = shortstr((const char *)b + i + 1, n, cache);
        i += 1 + n;
        break;
    }
    case 'S':
    case 'x': {
        Py_ssize_t n = (Py_ssize_t)((u16(b + i) << 16) | u16(b + i + 2));
        i += 4;
        if (n > end - i) {
            *slow = 1;
            return NULL;
        }
        v = PyBytes_FromStringAndSize((const char *)b + i, n);
        i += n;
        if (v != NULL && c == 'S') {
            PyObject *raw = v;
            v = helper(dec_str, "O", raw);
            Py_DECREF(raw);
        }
        break;
    }
    case 'T':
        if (raw_timestamp)
            v = PyLong_FromUnsignedLongLong(u64(b + i));
        else
            v = helper(dec_timestamp, "K", (unsigned long long)u64(b + i));
        i += 8;
        break;
    case 'F':
    case 'A': {   /* the value and the offset after it */
        PyObject *r = helper(c == 'F' ? dec_table : dec_array, "Onn", buf,
                             i, end);
        if (r == NULL)
            break;
        if (!PyTuple_Check(r) || PyTuple_Size(r) != 2) {
            Py_DECREF(r);
            break;     /* (slow: the pure decoder says what is wrong) */
        }
        v = PyTuple_GetItem(r, 0);
        Py_XINCREF(v);
        i = PyLong_AsSsize_t(PyTuple_GetItem(r, 1));
        Py_DECREF(r);
        if (i == -1 && PyErr_Occurred()) {
            Py_XDECREF(v);
            return NULL;
        }
        break;
    }
    }
    if (v == NULL && !PyErr_Occurred())
        *slow = 1;
    *pi = i;
    return v;
}

/* A tuple of the ``n`` objects in ``items``, stealing each (what
   Py_BuildValue with "N" items makes, without parsing a format string
   once per message); NULL, every item released, when one of them is
   NULL (its error set) or the tuple cannot be made. */
static PyObject *tuple_of(Py_ssize_t n, PyObject **items)
{
    PyObject *t = NULL;
    for (Py_ssize_t k = 0; k < n; k++)
        if (items[k] == NULL)
            goto fail;
    t = PyTuple_New(n);
    if (t == NULL)
        goto fail;
    for (Py_ssize_t k = 0; k < n; k++)
        PyTuple_SetItem(t, k, items[k]);
    return t;
fail:
    for (Py_ssize_t k = 0; k < n; k++)
        Py_XDECREF(items[k]);
    return NULL;
}

/* (obj, n), stealing ``obj`` */
static PyObject *with_offset(PyObject *obj, Py_ssize_t n)
{
    PyObject *items[2] = {obj, PyLong_FromSsize_t(n)};
    return tuple_of(2, items);
}

static PyObject *decode_properties_at(PyObject *buf, PyObject *offset_obj,
                                      Py_ssize_t offset);

static PyObject *decode_properties_basic(PyObject *self, PyObject *args)
{
    PyObject *buf, *offset_obj = NULL;
    if (!PyArg_UnpackTuple(args, "decode_properties_basic", 1, 2, &buf,
                           &offset_obj))
        return NULL;
    Py_ssize_t offset = 0;
    if (offset_obj != NULL) {
        offset = PyLong_AsSsize_t(offset_obj);
        if (offset == -1 && PyErr_Occurred())
            return NULL;
    }
    return decode_properties_at(buf, offset_obj, offset);
}

/* decode_properties_basic(buf, offset); ``offset_obj`` is ``offset`` as
   the caller gave it, or NULL (the pure decoder is then given ``offset``
   as a new int) */
static PyObject *decode_properties_at(PyObject *buf, PyObject *offset_obj,
                                      Py_ssize_t offset)
{
    char *data;
    Py_ssize_t end;
    if (dec_table == NULL || !PyBytes_Check(buf) || offset < 0 ||
        PyBytes_AsStringAndSize(buf, &data, &end) < 0)
        goto slow;
    const unsigned char *b = (const unsigned char *)data;
    Py_ssize_t i = offset;
    if (end - i < 2)
        goto slow;
    unsigned flags = u16(b + i);
    i += 2;
    if (flags & 0x0003) {
        if (flags & 0x0002)
            goto slow;
        unsigned more = flags & 1;
        while (more) {      /* continuation words: no basic property */
            if (end - i < 2)
                goto slow;
            unsigned extra = u16(b + i);
            i += 2;
            if (extra & 0xFFFE)
                goto slow;
            more = extra & 1;
        }
        flags &= 0xFFFC;
    }
    PyObject *props = PyDict_New();
    if (props == NULL)
        return NULL;
    for (int bit = 15; bit > 1 && flags; bit--) {
        if (!(flags & (1u << bit)))
            continue;
        int slow = 0;
        PyObject *value = prop_formats[bit] ? decode_field(
            prop_formats[bit], buf, b, &i, end, &caches[bit], 1, &slow) :
            NULL;
        if (value == NULL && (slow || !prop_formats[bit]))
            goto slow_props;
        if (value == NULL)
            goto fail;
        int r = PyDict_SetItem(props, prop_names[bit], value);
        Py_DECREF(value);
        if (r < 0)
            goto fail;
    }
    return with_offset(props, i);
fail:
    Py_DECREF(props);
    return NULL;
slow_props:
    Py_DECREF(props);
slow:
    if (offset_obj == NULL) {
        PyObject *at = PyLong_FromSsize_t(offset);
        if (at == NULL)
            return NULL;
        PyObject *r = pure(buf, at);
        Py_DECREF(at);
        return r;
    }
    return pure(buf, offset_obj);
}

/* ---------------------------------------------------------------------
 * ArgsDecoder(fmt, pure): the twin of serialization.decoder_for(fmt), a
 * callable decoder(buf, offset) -> ([values], offset).  Scalars and
 * shortstrs are decoded here; longstrs, tables, arrays and timestamps go
 * through the pure helpers; anything malformed through ``pure``. */


#define MAX_FIELDS 32

/* ArgsDecoder and ArgsEncoder: a format, its pure twin and (decoder) the
 * cache of each shortstr field's last value. */
typedef struct {
    PyObject_HEAD
    char fmt[MAX_FIELDS + 1];
    Py_ssize_t nfields;
    PyObject *pure;
    StrCache *strings;           /* one per field (decoder only) */
} FmtCodec;

typedef FmtCodec ArgsDecoder;

static void FmtCodec_dealloc(PyObject *op)
{
    FmtCodec *self = (FmtCodec *)op;
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(self->pure);
    if (self->strings != NULL) {
        for (Py_ssize_t k = 0; k < self->nfields; k++)
            Py_XDECREF(self->strings[k].value);
        PyMem_Free(self->strings);
    }
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

/* A new codec of (fmt, pure): ``fmt`` made only of ``letters``. */
static PyObject *fmt_codec_new(PyTypeObject *type, PyObject *args,
                               const char *letters, int with_strings)
{
    PyObject *fmt, *pure;
    if (!PyArg_ParseTuple(args, "UO", &fmt, &pure))
        return NULL;
    PyObject *ascii = PyUnicode_AsASCIIString(fmt);
    if (ascii == NULL)
        return NULL;
    const char *f = PyBytes_AsString(ascii);
    Py_ssize_t n = PyBytes_Size(ascii);
    if (n > MAX_FIELDS || strspn(f, letters) != (size_t)n) {
        Py_DECREF(ascii);
        PyErr_Format(PyExc_ValueError, "format %R: not for %s", fmt,
                     with_strings ? "ArgsDecoder" : "ArgsEncoder");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    FmtCodec *self = (FmtCodec *)alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(ascii);
        return NULL;
    }
    memcpy(self->fmt, f, (size_t)n);
    self->fmt[n] = 0;
    self->nfields = n;
    Py_DECREF(ascii);
    Py_INCREF(pure);
    self->pure = pure;
    if (with_strings) {
        self->strings = PyMem_Calloc((size_t)(n ? n : 1), sizeof(StrCache));
        if (self->strings == NULL) {
            Py_DECREF(self);
            return PyErr_NoMemory();
        }
    }
    return (PyObject *)self;
}

static PyObject *ArgsDecoder_new(PyTypeObject *type, PyObject *args,
                                 PyObject *kwargs)
{
    return fmt_codec_new(type, args, "oBlLfsSxFATb", 1);
}

static PyObject *ArgsDecoder_call(PyObject *op, PyObject *args,
                                  PyObject *kwargs)
{
    ArgsDecoder *self = (ArgsDecoder *)op;
    PyObject *buf, *offset_obj;
    if (!PyArg_UnpackTuple(args, "decode", 2, 2, &buf, &offset_obj))
        return NULL;
    Py_ssize_t i = PyLong_AsSsize_t(offset_obj);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    char *data;
    Py_ssize_t end;
    if (!PyBytes_Check(buf) || i < 0 || dec_str == NULL ||
        PyBytes_AsStringAndSize(buf, &data, &end) < 0)
        return PyObject_CallFunctionObjArgs(self->pure, buf, offset_obj,
                                            NULL);
    const unsigned char *b = (const unsigned char *)data;
    PyObject *values = PyList_New(self->nfields);
    if (values == NULL)
        return NULL;
    const char *f = self->fmt;
    Py_ssize_t k = 0;
    while (k < self->nfields) {
        PyObject *v = NULL;
        char c = f[k];
        if (c == 'b') {
            if (i >= end)
                goto slow;
            unsigned octet = b[i++];
            for (int bit = 0; bit < 8 && k < self->nfields && f[k] == 'b';
                 bit++, k++) {
                PyObject *flag = (octet >> bit) & 1 ? Py_True : Py_False;
                Py_INCREF(flag);
                PyList_SetItem(values, k, flag);
            }
            continue;
        }
        int slow = 0;
        v = decode_field(c, buf, b, &i, end, &self->strings[k], 0, &slow);
        if (slow)
            goto slow;
        if (v == NULL)
            goto fail;
        PyList_SetItem(values, k, v);   /* steals v */
        k++;
    }
    return with_offset(values, i);
slow:
    Py_DECREF(values);
    return PyObject_CallFunctionObjArgs(self->pure, buf, offset_obj, NULL);
fail:
    Py_DECREF(values);
    return NULL;
}

static PyType_Slot ArgsDecoder_slots[] = {
    {Py_tp_new, ArgsDecoder_new},
    {Py_tp_dealloc, FmtCodec_dealloc},
    {Py_tp_call, ArgsDecoder_call},
    {Py_tp_doc, "ArgsDecoder(fmt, pure): decoder(buf, offset) -> "
                "([values], offset), the compiled twin of the pure decoder "
                "serialization.decoder_for(fmt) makes (``pure``)."},
    {0, NULL},
};

static PyType_Spec ArgsDecoder_spec = {
    "amqp._speedups.ArgsDecoder", sizeof(FmtCodec), 0,
    Py_TPFLAGS_DEFAULT, ArgsDecoder_slots,
};

/* ---------------------------------------------------------------------
 * ContentTaker(frames): the twin of frames.take_content (a FrameBuffer),
 * called as taker(channel) -> (header payload, body) or None.  Reads
 * the buffer's attributes as the method does; a buffer that is not bytes
 * (a bytearray while a large frame collects) goes to the method itself. */

typedef struct {
    PyObject_HEAD
    PyObject *frames;
} ContentTaker;

static PyObject *str_buf, *str_pos, *str_collecting, *str_max_payload,
    *str_collect_min, *str_take_content;

static void ContentTaker_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(((ContentTaker *)op)->frames);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

static PyObject *ContentTaker_new(PyTypeObject *type, PyObject *args,
                                  PyObject *kwargs)
{
    PyObject *frames;
    if (!PyArg_UnpackTuple(args, "ContentTaker", 1, 1, &frames))
        return NULL;
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    ContentTaker *self = (ContentTaker *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(frames);
    self->frames = frames;
    return (PyObject *)self;
}

static Py_ssize_t int_attr(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return n;
}

/* bool(obj.name): 1, 0, or -1 with an exception set */
static int attr_truth(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int yes = PyObject_IsTrue(v);
    Py_DECREF(v);
    return yes;
}

static PyObject *ContentTaker_call(PyObject *op, PyObject *args,
                                   PyObject *kwargs)
{
    PyObject *frames = ((ContentTaker *)op)->frames;
    PyObject *channel_obj;
    if (!PyArg_UnpackTuple(args, "take_content", 1, 1, &channel_obj))
        return NULL;
    long channel = PyLong_AsLong(channel_obj);
    if (channel == -1 && PyErr_Occurred())
        return NULL;
    PyObject *buf = PyObject_GetAttr(frames, str_buf);
    if (buf == NULL)
        return NULL;
    if (!PyBytes_Check(buf)) {
        Py_DECREF(buf);
        return PyObject_CallMethodObjArgs(frames, str_take_content,
                                          channel_obj, NULL);
    }
    PyObject *result = NULL;
    PyObject *collecting = PyObject_GetAttr(frames, str_collecting);
    if (collecting == NULL)
        goto done;
    int busy = PyObject_IsTrue(collecting);
    Py_DECREF(collecting);
    if (busy < 0)
        goto done;
    Py_ssize_t pos = int_attr(frames, str_pos);
    Py_ssize_t max_payload = int_attr(frames, str_max_payload);
    Py_ssize_t collect_min = int_attr(frames, str_collect_min);
    if (PyErr_Occurred())
        goto done;
    const unsigned char *b = (const unsigned char *)PyBytes_AsString(buf);
    Py_ssize_t have = PyBytes_Size(buf);
    if (busy || pos < 0 || have - pos < 7)
        goto none;
    uint32_t size = (u16(b + pos + 3) << 16) | u16(b + pos + 5);
    if (b[pos] != 2 || (long)u16(b + pos + 1) != channel || size < 12 ||
        (Py_ssize_t)size > max_payload || (Py_ssize_t)size >= have - pos - 7)
        goto none;
    Py_ssize_t hstart = pos + 7, hend = hstart + (Py_ssize_t)size;
    if (b[hend] != 0xCE)
        goto none;
    uint64_t body_size = u64(b + hstart + 4);
    Py_ssize_t next = hend + 1;
    Py_ssize_t bstart = 0, bend = 0;
    if (body_size) {
        if (have - next < 7 || body_size >= (uint64_t)collect_min)
            goto none;
        uint32_t bsize = (u16(b + next + 3) << 16) | u16(b + next + 5);
        if (b[next] != 3 || (long)u16(b + next + 1) != channel ||
            (uint64_t)bsize != body_size ||
            (Py_ssize_t)bsize >= have - next - 7)
            goto none;
        bstart = next + 7;
        bend = bstart + (Py_ssize_t)bsize;
        if (b[bend] != 0xCE)
            goto none;
        next = bend + 1;
    }
    PyObject *new_pos = PyLong_FromSsize_t(next);
    if (new_pos == NULL)
        goto done;
    int set = PyObject_SetAttr(frames, str_pos, new_pos);
    Py_DECREF(new_pos);
    if (set < 0)
        goto done;
    {
        PyObject *items[2] = {PyBytes_FromStringAndSize(
            (const char *)b + hstart, hend - hstart), NULL};
        if (items[0] != NULL)
            items[1] = PyBytes_FromStringAndSize((const char *)b + bstart,
                                                 bend - bstart);
        result = tuple_of(2, items);
    }
    goto done;
none:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_DECREF(buf);
    return result;
}

static PyType_Slot ContentTaker_slots[] = {
    {Py_tp_new, ContentTaker_new},
    {Py_tp_dealloc, ContentTaker_dealloc},
    {Py_tp_call, ContentTaker_call},
    {Py_tp_doc, "ContentTaker(frames): taker(channel), the compiled twin "
                "of frames.take_content(channel) for a FrameBuffer."},
    {0, NULL},
};

static PyType_Spec ContentTaker_spec = {
    "amqp._speedups.ContentTaker", sizeof(ContentTaker), 0,
    Py_TPFLAGS_DEFAULT, ContentTaker_slots,
};

/* ---------------------------------------------------------------------
 * Holders: the types below keep references to Python objects (a frame
 * buffer, a connection, callbacks) given to their constructor, in order.
 * They take part in garbage collection: a connection holds its frame
 * handler, which holds the connection. */

#define MAX_REFS 13

typedef struct {
    PyObject_HEAD
    int nrefs;
    PyObject *ref[MAX_REFS];
    /* FrameHandler: the last method signature seen, reused while the
     * class and method ids repeat */
    unsigned last_class, last_method;
    PyObject *last_sig;
    int last_content;   /* whether last_sig is a content method */
} Holder;

static int Holder_traverse(PyObject *op, visitproc visit, void *arg)
{
    Holder *self = (Holder *)op;
    for (int k = 0; k < self->nrefs; k++)
        Py_VISIT(self->ref[k]);
    Py_VISIT(Py_TYPE(op));
    return 0;
}

static int Holder_clear(PyObject *op)
{
    Holder *self = (Holder *)op;
    for (int k = 0; k < self->nrefs; k++)
        Py_CLEAR(self->ref[k]);
    Py_CLEAR(self->last_sig);
    return 0;
}

static void Holder_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    Holder_clear(op);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

/* A new holder of the ``n`` positional arguments of ``args``. */
static PyObject *holder_new(PyTypeObject *type, PyObject *args,
                            PyObject *kwargs, int n, const char *name)
{
    if ((kwargs != NULL && PyDict_Size(kwargs)) || !PyTuple_Check(args) ||
        PyTuple_Size(args) != n) {
        PyErr_Format(PyExc_TypeError, "%s takes %d positional arguments",
                     name, n);
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Holder *self = (Holder *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->nrefs = n;
    for (int k = 0; k < n; k++) {
        self->ref[k] = PyTuple_GetItem(args, k);
        Py_INCREF(self->ref[k]);
    }
    return (PyObject *)self;
}

/* A holder of the ``given`` positional arguments and, after them,
   ``total - given`` references it keeps for itself (None at first). */
static PyObject *holder_keeping(PyTypeObject *type, PyObject *args,
                                PyObject *kwargs, int given, int total,
                                const char *name)
{
    Holder *self = (Holder *)holder_new(type, args, kwargs, given, name);
    if (self == NULL)
        return NULL;
    for (int k = given; k < total; k++) {
        Py_INCREF(Py_None);
        self->ref[k] = Py_None;
    }
    self->nrefs = total;
    return (PyObject *)self;
}

#define HOLDER_SLOTS \
    {Py_tp_dealloc, Holder_dealloc}, \
    {Py_tp_traverse, Holder_traverse}, \
    {Py_tp_clear, Holder_clear}

#define HOLDER_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC)

/* A holder type ``Name`` with its own Name_new, called as Name_call. */
#define HOLDER_TYPE_NEW(Name, doc)                                         \
    static PyType_Slot Name##_slots[] = {                                  \
        {Py_tp_new, Name##_new}, {Py_tp_call, Name##_call}, HOLDER_SLOTS,  \
        {Py_tp_doc, doc}, {0, NULL},                                       \
    };                                                                     \
    static PyType_Spec Name##_spec = {                                     \
        "amqp._speedups." #Name, sizeof(Holder), 0, HOLDER_FLAGS,          \
        Name##_slots,                                                      \
    };

/* A holder type ``Name`` of ``n`` references, called as Name_call. */
#define HOLDER_TYPE(Name, n, doc)                                          \
    static PyObject *Name##_new(PyTypeObject *type, PyObject *args,        \
                                PyObject *kwargs)                          \
    {                                                                      \
        return holder_new(type, args, kwargs, (n), #Name);                 \
    }                                                                      \
    HOLDER_TYPE_NEW(Name, doc)

/* obj.name += delta (an int attribute; a frame counter) */
static int add_to_attr(PyObject *obj, PyObject *name, long delta)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    PyObject *sum;
    long long now = PyLong_CheckExact(v) ? PyLong_AsLongLong(v) : -1;
    if (now >= 0 && now < (1LL << 62)) {
        /* (the usual case: cheaper than the number protocol) */
        sum = PyLong_FromLongLong(now + delta);
    } else {
        PyErr_Clear();
        PyObject *d = PyLong_FromLong(delta);
        if (d == NULL) {
            Py_DECREF(v);
            return -1;
        }
        sum = PyNumber_Add(v, d);
        Py_DECREF(d);
    }
    Py_DECREF(v);
    if (sum == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return r;
}

/* msg.name of an amqp.Message: its slot read directly, without the
   __getattr__ hook every lookup on a Message goes through; the hook
   (which derives unset content state) only when the slot is unset */
static PyObject *message_attr(PyObject *msg, PyObject *name)
{
    PyObject *v = PyObject_GenericGetAttr(msg, name);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        v = PyObject_GetAttr(msg, name);
    }
    return v;
}

/* encoded basic properties when there are none: an empty flags word */
static PyObject *no_properties;

static PyObject *str_fileno, *str_acquire, *str_release, *str_plain_writes,
    *str_overrides, *str_sock, *str_send, *str_write_failed, *str_write_rest,
    *str_holding;
static PyObject *str_next_frame, *str_max_body,
    *str_bytes_recv, *str_bytes_sent, *str_frame_max, *str_max_message_size,
    *str_body, *str_properties, *str_channel, *str_delivery_info,
    *str_frame_method, *str_frame_args, *str_body_size;

/* ---------------------------------------------------------------------
 * NextFrame(frames): reader() -> (frame_type, channel, payload) or None,
 * the twin of frames.next_frame() for a FrameBuffer in its usual state
 * (a bytes buffer, no large body being collected).  Anything else --
 * collecting, a frame that starts a collection, any malformed frame -- is
 * the method's. */

static PyObject *NextFrame_call(PyObject *op, PyObject *args,
                                PyObject *kwargs)
{
    PyObject *frames = ((Holder *)op)->ref[0];
    PyObject *buf = NULL, *result = NULL;
    int busy = attr_truth(frames, str_collecting);
    if (busy < 0)
        return NULL;
    if (busy)
        goto pure;
    buf = PyObject_GetAttr(frames, str_buf);
    if (buf == NULL)
        return NULL;
    if (!PyBytes_Check(buf))
        goto pure;
    Py_ssize_t pos = int_attr(frames, str_pos);
    if (pos == -1 && PyErr_Occurred())
        goto done;
    const unsigned char *b = (const unsigned char *)PyBytes_AsString(buf);
    Py_ssize_t have = PyBytes_Size(buf);
    if (pos < 0 || pos > have)
        goto pure;
    if (have - pos < 7) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    unsigned frame_type = b[pos];
    unsigned channel = u16(b + pos + 1);
    Py_ssize_t size = (Py_ssize_t)((u16(b + pos + 3) << 16) |
                                   u16(b + pos + 5));
    Py_ssize_t max_payload = int_attr(frames, str_max_payload);
    if (max_payload == -1 && PyErr_Occurred())
        goto done;
    if (size > max_payload)
        goto pure;
    Py_ssize_t start = pos + 7, end = start + size;
    if (have <= end) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    if (b[end] != 0xCE)
        goto pure;
    if (frame_type == 2 && size >= 12) {
        /* a header whose body the buffer would collect: the method's */
        uint64_t body_size = u64(b + start + 4);
        Py_ssize_t lo = int_attr(frames, str_collect_min);
        if (lo == -1 && PyErr_Occurred())
            goto done;
        if (body_size >= (uint64_t)(lo < 0 ? 0 : lo))
            goto pure;
    }
    PyObject *new_pos = PyLong_FromSsize_t(end + 1);
    if (new_pos == NULL)
        goto done;
    int set = PyObject_SetAttr(frames, str_pos, new_pos);
    Py_DECREF(new_pos);
    if (set < 0)
        goto done;
    {
        PyObject *items[3] = {PyLong_FromUnsignedLong(frame_type), NULL,
                              NULL};
        if (items[0] != NULL)
            items[1] = PyLong_FromUnsignedLong(channel);
        if (items[1] != NULL)
            items[2] = PyBytes_FromStringAndSize((const char *)b + start,
                                                 size);
        result = tuple_of(3, items);
    }
    goto done;
pure:
    result = PyObject_CallMethodObjArgs(frames, str_next_frame, NULL);
done:
    Py_XDECREF(buf);
    return result;
}

HOLDER_TYPE(NextFrame, 1,
            "NextFrame(frames): reader() -> frame or None, the "
            "compiled twin of frames.next_frame() for a FrameBuffer.")

/* ---------------------------------------------------------------------
 * FrameHandler(pure, partial, connection, callback, content_methods,
 * methods, take_content, message_type, content): on_frame(frame), the
 * twin of the closure method_framing.frame_handler returns (``pure``),
 * sharing its state (``partial``: channel -> content being assembled).
 * A method frame on a channel with nothing partial is handled here: a
 * content method whose header and body ``take_content`` finds buffered
 * whole becomes a Message built here; everything else (header and body
 * frames, heartbeats, content not yet whole, malformed frames, content
 * over max_message_size) goes to ``pure``, or to ``content`` (the
 * closure's _content) for a header this code does not take.  ``methods``
 * maps every known method signature to itself: the signature handed to
 * ``callback`` is that tuple (spec's constant), so the channel's lookups
 * and ``in`` tests find it by identity. */

enum { FH_PURE, FH_PARTIAL, FH_CONN, FH_CALLBACK, FH_CONTENT_METHODS,
       FH_METHODS, FH_TAKE, FH_MESSAGE, FH_CONTENT, FH_NREFS };

static PyObject *decode_properties_basic(PyObject *self, PyObject *args);

/* The Message for a content header payload and body; NULL with no error
 * set when the pure _content is to judge it. */
static PyObject *build_message(Holder *self, PyObject *header,
                               PyObject *body, PyObject *sig,
                               PyObject *payload)
{
    Py_ssize_t n = PyBytes_Size(header);
    const unsigned char *h = (const unsigned char *)PyBytes_AsString(header);
    if (h == NULL || n < 14 || u16(h) != 60)
        return NULL;
    uint64_t body_size = u64(h + 4);
    PyObject *limit = PyObject_GetAttr(self->ref[FH_CONN],
                                       str_max_message_size);
    if (limit == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
    } else if (limit != Py_None) {
        /* (an int: over it, the pure path makes an OversizedContent;
         * anything else is for the pure path to weigh) */
        int over = 1;
        if (PyLong_CheckExact(limit)) {
            int overflow = 0;
            long long most = PyLong_AsLongLongAndOverflow(limit, &overflow);
            if (most == -1 && PyErr_Occurred())
                PyErr_Clear();
            else if (overflow > 0 || most == 0 ||
                     (most > 0 && body_size <= (uint64_t)most))
                over = 0;
        }
        Py_DECREF(limit);
        if (over)
            return NULL;
    } else {
        Py_DECREF(limit);
    }
    PyObject *decoded = decode_properties_at(header, NULL, 12);
    if (decoded == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception))
            PyErr_Clear();      /* the pure path raises it again */
        return NULL;
    }
    PyObject *props = PyTuple_GetItem(decoded, 0);
    PyTypeObject *mtype = (PyTypeObject *)self->ref[FH_MESSAGE];
    allocfunc alloc = (allocfunc)PyType_GetSlot(mtype, Py_tp_alloc);
    PyObject *msg = alloc(mtype, 0);
    PyObject *size_obj = PyLong_FromUnsignedLongLong(body_size);
    if (msg == NULL || size_obj == NULL ||
        PyObject_SetAttr(msg, str_body, body) < 0 ||
        PyObject_SetAttr(msg, str_properties, props) < 0 ||
        PyObject_SetAttr(msg, str_channel, Py_None) < 0 ||
        PyObject_SetAttr(msg, str_delivery_info, Py_None) < 0 ||
        PyObject_SetAttr(msg, str_frame_method, sig) < 0 ||
        PyObject_SetAttr(msg, str_frame_args, payload) < 0 ||
        PyObject_SetAttr(msg, str_body_size, size_obj) < 0) {
        Py_CLEAR(msg);
    }
    Py_XDECREF(size_obj);
    Py_DECREF(decoded);
    return msg;
}

static PyObject *FrameHandler_call(PyObject *op, PyObject *args,
                                   PyObject *kwargs)
{
    Holder *self = (Holder *)op;
    PyObject *frame;
    if (!PyArg_UnpackTuple(args, "on_frame", 1, 1, &frame))
        return NULL;
    PyObject *payload;
    if (!PyTuple_Check(frame) || PyTuple_Size(frame) != 3 ||
        !PyBytes_Check(payload = PyTuple_GetItem(frame, 2)))
        goto pure;
    PyObject *type_obj = PyTuple_GetItem(frame, 0);
    PyObject *channel_obj = PyTuple_GetItem(frame, 1);
    if (!PyLong_CheckExact(type_obj) || !PyLong_CheckExact(channel_obj))
        goto pure;
    int overflow = 0;
    if (PyLong_AsLongAndOverflow(type_obj, &overflow) != 1 || overflow)
        goto pure;
    int busy = PyDict_Contains(self->ref[FH_PARTIAL], channel_obj);
    if (busy < 0)
        return NULL;
    Py_ssize_t plen = PyBytes_Size(payload);
    if (busy || plen < 4)
        goto pure;
    const unsigned char *p = (const unsigned char *)PyBytes_AsString(payload);
    unsigned class_id = u16(p), method_id = u16(p + 2);
    if (self->last_sig == NULL || self->last_class != class_id ||
        self->last_method != method_id) {
        /* the known signature's own tuple (``methods`` maps each to
           itself), so that the channel's lookups match it by identity;
           an unknown method is the pure handler's */
        PyObject *c = PyLong_FromUnsignedLong(class_id);
        PyObject *m = c == NULL ? NULL : PyLong_FromUnsignedLong(method_id);
        PyObject *key = m == NULL ? NULL : PyTuple_Pack(2, c, m);
        Py_XDECREF(c);
        Py_XDECREF(m);
        if (key == NULL)
            return NULL;
        PyObject *known = PyDict_GetItemWithError(self->ref[FH_METHODS],
                                                  key);
        if (known == NULL) {
            Py_DECREF(key);
            if (PyErr_Occurred())
                return NULL;
            goto pure;
        }
        int is_content = PySet_Contains(self->ref[FH_CONTENT_METHODS], key);
        Py_DECREF(key);
        if (is_content < 0)
            return NULL;
        Py_INCREF(known);
        Py_XDECREF(self->last_sig);
        self->last_sig = known;
        self->last_class = class_id;
        self->last_method = method_id;
        self->last_content = is_content;
    }
    PyObject *sig = self->last_sig;
    Py_INCREF(sig);      /* a callback may replace last_sig */
    PyObject *result = NULL, *content = Py_None;
    Py_INCREF(content);
    if (!self->last_content) {
        if (add_to_attr(self->ref[FH_CONN], str_bytes_recv, 1) < 0)
            goto done;
    } else {
        PyObject *whole = PyObject_CallFunctionObjArgs(self->ref[FH_TAKE],
                                                       channel_obj, NULL);
        if (whole == NULL)
            goto done;
        if (whole == Py_None) {
            Py_DECREF(whole);
            Py_DECREF(sig);
            Py_DECREF(content);
            goto pure;
        }
        PyObject *header = PyTuple_GetItem(whole, 0);
        PyObject *body = PyTuple_GetItem(whole, 1);
        if (add_to_attr(self->ref[FH_CONN], str_bytes_recv,
                        PyBytes_Size(body) ? 3 : 2) < 0) {
            Py_DECREF(whole);
            goto done;
        }
        Py_DECREF(content);
        content = build_message(self, header, body, sig, payload);
        if (content == NULL && !PyErr_Occurred())
            content = PyObject_CallFunctionObjArgs(
                self->ref[FH_CONTENT], header, body, sig, payload, NULL);
        Py_DECREF(whole);
        if (content == NULL)
            goto done;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(
        self->ref[FH_CALLBACK], channel_obj, sig, payload, content, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        Py_INCREF(Py_True);
        result = Py_True;
    }
done:
    Py_DECREF(sig);
    Py_XDECREF(content);
    return result;
pure:
    return PyObject_CallFunctionObjArgs(self->ref[FH_PURE], frame, NULL);
}

HOLDER_TYPE(FrameHandler, FH_NREFS,
            "FrameHandler(pure, partial, connection, callback, "
            "content_methods, methods, take_content, message_type, "
            "content): on_frame(frame), the compiled twin of the "
            "closure frame_handler returns.")

/* ---------------------------------------------------------------------
 * FrameWriter(pure, connection, write, encode_properties, message_type,
 * transport, write_lock):
 * write_frame(type_, channel, method_sig, args, content=None), the twin
 * of the function method_framing.frame_writer returns (``pure``).  A
 * method alone, or with a Message whose body is bytes small enough for
 * one frame (and not written scatter-gather), is built here into one
 * bytes object and written with one ``write`` call; anything else, and
 * any frame over frame_max, is the pure writer's. */

enum { FW_PURE, FW_CONN, FW_WRITE, FW_ENCODE_PROPS, FW_MESSAGE,
       FW_TRANSPORT, FW_LOCK, FW_SCATTER,
       FW_ACQUIRE, FW_RELEASE,  /* (kept: the lock's methods, bound once;
                                   the socket last written to and its */
       FW_SOCK, FW_FILENO,      /*  bound fileno) */
       FW_NREFS };

static PyObject *socket_type;   /* socket.socket */

/* The descriptor of ``sock`` when it is a plain socket.socket (an
   SSLSocket's descriptor carries TLS records, and other socket classes,
   gevent's, send their own way), or -1 (no exception set). */
static long plain_fd(PyObject **ref, PyObject *sock)
{
#ifndef _WIN32
    if (socket_type == NULL || (PyObject *)Py_TYPE(sock) != socket_type)
        return -1;
    if (ref[FW_SOCK] != sock) {
        /* its bound fileno, kept while the transport keeps the socket
           (called each time: a closed socket says -1) */
        PyObject *fileno = PyObject_GetAttr(sock, str_fileno);
        if (fileno == NULL) {
            PyErr_Clear();
            return -1;
        }
        PyObject *old_sock = ref[FW_SOCK], *old_fileno = ref[FW_FILENO];
        Py_INCREF(sock);
        ref[FW_SOCK] = sock;
        ref[FW_FILENO] = fileno;
        Py_DECREF(old_sock);
        Py_DECREF(old_fileno);
    }
    PyObject *r = PyObject_CallObject(ref[FW_FILENO], NULL);
    long fd = r == NULL ? -1 : PyLong_AsLong(r);
    Py_XDECREF(r);
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Clear();
        return -1;
    }
    return fd;
#else
    (void)ref; (void)sock;
    return -1;
#endif
}

/* What sock.send(frame) would do when the socket can take the frame at
   once: one send(2) on its descriptor with MSG_DONTWAIT, under the GIL
   (it cannot block).  Returns the bytes sent, or 0 when nothing was sent
   for any reason (would block, EINTR, an error, a closed socket, no such
   flag on this platform): the caller then calls sock.send, which blocks,
   handles signals and raises the socket module's own exceptions.  Only
   for a socket in blocking mode (no timeout), as the plain branch is. */
static Py_ssize_t send_now(PyObject **ref, PyObject *sock, PyObject *frame,
                           Py_ssize_t total, int flags)
{
#if defined(MSG_DONTWAIT) && !defined(_WIN32)
    long fd = plain_fd(ref, sock);
    if (fd < 0)
        return 0;
    ssize_t n = send((int)fd, PyBytes_AsString(frame), (size_t)total,
                     MSG_DONTWAIT | flags);
    return n > 0 ? (Py_ssize_t)n : 0;
#else
    (void)ref; (void)sock; (void)frame; (void)total; (void)flags;
    return 0;
#endif
}

/* With the exception being raised by a send: report it to
   transport._write_failed(exc, sent, total), as the transport's own
   writes do, and leave it set (or the reporter's own, if that failed). */
static void report_write_failure(PyObject *transport, Py_ssize_t sent,
                                 Py_ssize_t total)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    PyObject *at = PyLong_FromSsize_t(sent);
    PyObject *size = PyLong_FromSsize_t(total);
    PyObject *f = (at && size) ? PyObject_CallMethodObjArgs(
        transport, str_write_failed, value ? value : Py_None, at, size,
        NULL) : NULL;
    Py_XDECREF(at);
    Py_XDECREF(size);
    if (f != NULL) {
        Py_DECREF(f);
        PyErr_Restore(type, value, tb);     /* raise what send raised */
    } else {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
}

/* The lock's release, whatever happened (an exception being raised is
   kept); -1 when release itself failed. */
static int release_lock(PyObject **ref)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *u = PyObject_CallObject(ref[FW_RELEASE], NULL);
    if (u == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    Py_DECREF(u);
    PyErr_Restore(type, value, tb);
    return 0;
}

/* Under the write lock: the socket when the transport's plain branch
   applies now (plain writes, no having_timeout() in force), else NULL,
   with *error set when that is because of an exception. */
static PyObject *plain_sock(PyObject *transport, int *error)
{
    *error = 1;
    PyObject *plain = PyObject_GetAttr(transport, str_plain_writes);
    if (plain == NULL)
        return NULL;
    int is_plain = plain == Py_True;
    Py_DECREF(plain);
    if (!is_plain) {
        *error = 0;             /* (the general write) */
        return NULL;
    }
    PyObject *overrides = PyObject_GetAttr(transport, str_overrides);
    if (overrides == NULL)
        return NULL;
    if (!PyLong_CheckExact(overrides) || PyLong_AsLong(overrides) != 0) {
        PyErr_Clear();
        Py_DECREF(overrides);
        *error = 0;             /* a having_timeout() is in force */
        return NULL;
    }
    Py_DECREF(overrides);
    return PyObject_GetAttr(transport, str_sock);
}

/* What transport.write(frame) does in its plain branch (see
   Transport.write; keep the two in step), without calling it: under the
   write lock, one blocking send when the transport makes plain writes and
   no having_timeout() is in force; a short send goes on in
   transport._write(frame, sent), a failed one is recorded by
   transport._write_failed(exc, 0, len).  Returns 1 when written, 0 when
   the plain branch does not apply now (nothing sent: call write), -1 on
   error. */
static int send_plain(PyObject **ref, PyObject *frame, int held)
{
    PyObject *transport = ref[FW_TRANSPORT];
    /* (The lock is always taken, even for a send that cannot block: a
       thread waiting in acquire() takes a lock the moment it is released,
       without the GIL, so a free lock seen here may be held by the time a
       short send needs it.) */
    PyObject *r = PyObject_CallObject(ref[FW_ACQUIRE], NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    int result = -1, error;
    PyObject *sock = plain_sock(transport, &error);
    if (sock == NULL) {
        if (!error)
            result = 0;
        goto release;
    }
    Py_ssize_t total = PyBytes_Size(frame);
    int flags = 0;
#ifdef MSG_MORE
    if (held) {
        /* transport.write_held: MSG_MORE while the reader is holding */
        PyObject *holding = PyObject_GetAttr(transport, str_holding);
        if (holding == NULL)
            PyErr_Clear();      /* (not one of ours: no holding) */
        else {
            if (holding == Py_True)
                flags = MSG_MORE;
            Py_DECREF(holding);
        }
    }
#else
    (void)held;
#endif
    Py_ssize_t sent = send_now(ref, sock, frame, total, flags);
    if (sent == total) {
        result = 1;
        goto release;
    }
    if (sent > 0)
        goto rest;
    r = PyObject_CallMethodObjArgs(sock, str_send, frame, NULL);
    if (r == NULL) {
        report_write_failure(transport, 0, total);
        goto release;
    }
    sent = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    if (sent == -1 && PyErr_Occurred())
        goto release;
rest:
    if (sent != total) {
        PyObject *at = PyLong_FromSsize_t(sent);
        r = at ? PyObject_CallMethodObjArgs(transport, str_write_rest, frame,
                                            at, NULL) : NULL;
        Py_XDECREF(at);
        if (r == NULL)
            goto release;
        Py_DECREF(r);
    }
    result = 1;
release:
    Py_XDECREF(sock);
    if (release_lock(ref) < 0)
        return -1;
    return result;
}

#define SCATTER_MIN 32768

static unsigned char *put_frame_header(unsigned char *o, unsigned type,
                                       unsigned channel, uint32_t size)
{
    o[0] = (unsigned char)type;
    o[1] = (unsigned char)(channel >> 8);
    o[2] = (unsigned char)channel;
    o[3] = (unsigned char)(size >> 24);
    o[4] = (unsigned char)(size >> 16);
    o[5] = (unsigned char)(size >> 8);
    o[6] = (unsigned char)size;
    return o + 7;
}

/* The method frame and, with ``props`` (not NULL), the content header
   frame for a body of ``blen`` bytes, written at ``o``: 12 + alen bytes,
   plus 20 + plen with the header.  Returns the end. */
static unsigned char *put_method_and_header(
    unsigned char *o, unsigned type_, unsigned channel, long class_id,
    long method_id, PyObject *margs, Py_ssize_t alen, PyObject *props,
    Py_ssize_t plen, Py_ssize_t blen)
{
    o = put_frame_header(o, type_, channel, (uint32_t)(alen + 4));
    *o++ = (unsigned char)(class_id >> 8);
    *o++ = (unsigned char)class_id;
    *o++ = (unsigned char)(method_id >> 8);
    *o++ = (unsigned char)method_id;
    if (alen)
        memcpy(o, PyBytes_AsString(margs), (size_t)alen);
    o += alen;
    *o++ = 0xCE;
    if (props == NULL)
        return o;
    o = put_frame_header(o, 2, channel, (uint32_t)(12 + plen));
    *o++ = 0;       /* class 60 (basic), weight 0 */
    *o++ = 60;
    *o++ = 0;
    *o++ = 0;
    uint64_t bs = (uint64_t)blen;
    for (int k = 7; k >= 0; k--)
        *o++ = (unsigned char)(bs >> (8 * k));
    if (plen)
        memcpy(o, PyBytes_AsString(props), (size_t)plen);
    o += plen;
    *o++ = 0xCE;
    return o;
}

#ifndef _WIN32
#ifdef IOV_MAX
#define SCATTER_IOV_MAX (IOV_MAX < 1024 ? IOV_MAX : 1024)
#else
#define SCATTER_IOV_MAX 16
#endif

/* What transport.writev(parts) does in its plain case (see
   Transport._writev; keep the two in step), for a method with a large
   body: ``head`` (the method frame, the content header frame and the
   first body frame's header) and the body's frames of ``chunk`` bytes
   each, the body's slices going from its own buffer to the kernel
   between the 8-byte seams ``seams`` (a frame end and the next frame's
   header; the last seam is the frame end alone).  Under the write lock,
   blocking sendmsg(2) calls on the descriptor of a plain socket.socket in
   blocking mode, without the GIL, IOV_MAX parts at a time.  A signal
   handler that raises, or an error, is reported to
   transport._write_failed(exc, sent, total) as the pure write does.
   Returns 1 when sent, 0 when the case does not apply now (nothing sent:
   the pure writer's), -1 on error. */
static int send_scatter(PyObject **ref, const unsigned char *head,
                        Py_ssize_t hlen, const char *body, Py_ssize_t blen,
                        Py_ssize_t chunk, const unsigned char *seams)
{
    PyObject *transport = ref[FW_TRANSPORT];
    Py_ssize_t nchunks = (blen + chunk - 1) / chunk;
    Py_ssize_t niov = 1 + 2 * nchunks;
    struct iovec *iov = PyMem_Malloc(sizeof(struct iovec) * (size_t)niov);
    if (iov == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    iov[0].iov_base = (void *)head;
    iov[0].iov_len = (size_t)hlen;
    Py_ssize_t total = hlen;
    for (Py_ssize_t i = 0; i < nchunks; i++) {
        Py_ssize_t start = i * chunk;
        Py_ssize_t size = blen - start < chunk ? blen - start : chunk;
        iov[1 + 2 * i].iov_base = (void *)(body + start);
        iov[1 + 2 * i].iov_len = (size_t)size;
        iov[2 + 2 * i].iov_base = (void *)(seams + 8 * i);
        iov[2 + 2 * i].iov_len = i + 1 < nchunks ? 8 : 1;
        total += size + (i + 1 < nchunks ? 8 : 1);
    }
    PyObject *r = PyObject_CallObject(ref[FW_ACQUIRE], NULL);
    if (r == NULL) {
        PyMem_Free(iov);
        return -1;
    }
    Py_DECREF(r);
    int result = -1, error;
    Py_ssize_t sent = 0, first = 0;
    PyObject *sock = plain_sock(transport, &error);
    if (sock == NULL) {
        if (!error)
            result = 0;
        goto release;
    }
    long fd = plain_fd(ref, sock);
    int fl = fd < 0 ? -1 : fcntl((int)fd, F_GETFL);
    if (fl == -1 || (fl & O_NONBLOCK)) {
        result = 0;     /* not a blocking plain socket now: the pure way */
        goto release;
    }
    for (int round = 0; ; round++) {
        if (round) {
            /* the descriptor again, as the socket module reads it for
               each call: a socket closed by another thread meanwhile
               says -1 (EBADF, as its sendmsg would), and its old
               number, which may be another file's by now, is not used */
            fd = plain_fd(ref, sock);
            if (fd < 0) {
                errno = EBADF;
                PyErr_SetFromErrno(PyExc_OSError);
                goto failed;
            }
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov + first;
        msg.msg_iovlen = niov - first < SCATTER_IOV_MAX ?
            (size_t)(niov - first) : SCATTER_IOV_MAX;
        ssize_t n;
        int err;
        Py_BEGIN_ALLOW_THREADS
        n = sendmsg((int)fd, &msg, 0);
        err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    goto failed;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK) {
                /* (a send timeout set on the socket by hand): wait until
                   it is writable, as the pure loop's _wait_ready does
                   with no deadline */
                struct pollfd pfd;
                pfd.fd = (int)fd;
                pfd.events = POLLOUT;
                pfd.revents = 0;
                Py_BEGIN_ALLOW_THREADS
                n = poll(&pfd, 1, -1);
                err = errno;
                Py_END_ALLOW_THREADS
                if (n >= 0 || err == EINTR) {
                    if (PyErr_CheckSignals() < 0)
                        goto failed;
                    continue;
                }
            }
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            goto failed;
        }
        sent += n;
        if (sent == total) {
            result = 1;
            goto release;
        }
        /* drop what went out, cut the part it ends in */
        size_t left = (size_t)n;
        while (left) {
            if (left >= iov[first].iov_len) {
                left -= iov[first].iov_len;
                first++;
            } else {
                iov[first].iov_base = (char *)iov[first].iov_base + left;
                iov[first].iov_len -= left;
                left = 0;
            }
        }
        if (PyErr_CheckSignals() < 0)   /* (as between two sendmsg calls
                                           of the pure loop) */
            goto failed;
    }
failed:
    report_write_failure(transport, sent, total);
release:
    Py_XDECREF(sock);
    PyMem_Free(iov);
    if (release_lock(ref) < 0)
        return -1;
    return result;
}
#endif

/* fw_write's case of a bytes body sent by scatter-gather (send_scatter):
   1 when written (*nbody set to its body frames), 0 when not the case now
   (nothing sent), -1 on error. */
static int fw_write_scatter(Holder *self, unsigned type_, unsigned channel,
                            long class_id, long method_id, PyObject *margs,
                            Py_ssize_t alen, PyObject *props, Py_ssize_t plen,
                            PyObject *body, Py_ssize_t blen,
                            Py_ssize_t frame_max, Py_ssize_t *nbody)
{
#ifndef _WIN32
    Py_ssize_t chunk = frame_max ? frame_max - 8 : blen;
    Py_ssize_t nchunks = (blen + chunk - 1) / chunk;
    Py_ssize_t hlen = 12 + alen + 20 + plen + 7;
    unsigned char *head = PyMem_Malloc((size_t)(hlen + 8 * nchunks));
    if (head == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    unsigned char *o = put_method_and_header(
        head, type_, channel, class_id, method_id, margs, alen, props, plen,
        blen);
    o = put_frame_header(o, 3, channel,
                         (uint32_t)(blen < chunk ? blen : chunk));
    /* the seams: each frame's end and the next frame's header */
    unsigned char *seams = o;
    for (Py_ssize_t i = 0; i < nchunks; i++) {
        seams[8 * i] = 0xCE;
        if (i + 1 < nchunks) {
            Py_ssize_t next = blen - (i + 1) * chunk;
            put_frame_header(seams + 8 * i + 1, 3, channel,
                             (uint32_t)(next < chunk ? next : chunk));
        }
    }
    int done = send_scatter(self->ref, head, hlen, PyBytes_AsString(body),
                            blen, chunk, seams);
    PyMem_Free(head);
    *nbody = nchunks;
    return done;
#else
    (void)self; (void)type_; (void)channel; (void)class_id;
    (void)method_id; (void)margs; (void)alen; (void)props; (void)plen;
    (void)body; (void)blen; (void)frame_max; (void)nbody;
    return 0;
#endif
}

/* Whether a method alone is written as transport.write_held writes it:
   basic.ack, basic.reject and basic.nack (method_framing._HELD_METHODS,
   keep the two in step). */
static int is_held_method(long class_id, long method_id)
{
    return class_id == 60 &&
        (method_id == 80 || method_id == 90 || method_id == 120);
}

/* The frames of one method (with its content, if any) built into one
   bytes object and sent: 1 when written, 0 when this is not the common
   case (nothing sent: the pure writer's, on the same arguments), -1 on
   error.  ``margs`` is bytes or NULL; ``content`` None or a Message. */
static int fw_write(Holder *self, long type_, long channel, long class_id,
                    long method_id, PyObject *margs, PyObject *content)
{
    PyObject *props = NULL, *frame = NULL, *body = NULL;
    if (type_ < 0 || type_ > 255 || channel < 0 || channel > 65535 ||
        class_id < 0 || class_id > 65535 || method_id < 0 ||
        method_id > 65535)
        return 0;
    Py_ssize_t alen = margs == NULL ? 0 : PyBytes_Size(margs);
    PyObject *fm = PyObject_GetAttr(self->ref[FW_CONN], str_frame_max);
    if (fm == NULL)
        return -1;
    Py_ssize_t frame_max = 0;
    if (fm != Py_None) {
        frame_max = PyLong_Check(fm) ? PyLong_AsSsize_t(fm) : -1;
        if (frame_max < 0) {
            PyErr_Clear();
            Py_DECREF(fm);
            return 0;
        }
    }
    Py_DECREF(fm);
    if (alen > 0xFFFFFFF0 || (frame_max && alen + 12 > frame_max))
        return 0;
    Py_ssize_t blen = 0, plen = 0;
    int nframes = 1, scatter = 0;
    if (content != Py_None) {
        if ((PyObject *)Py_TYPE(content) != self->ref[FW_MESSAGE])
            return 0;
        body = message_attr(content, str_body);
        if (body == NULL)
            return -1;
        if (!PyBytes_Check(body))
            goto pure;
        blen = PyBytes_Size(body);
        if (blen >= SCATTER_MIN || (frame_max && blen > frame_max - 8)) {
            /* scatter-gather, when the transport's writev is the stock
               one and its plain case may apply */
            if (self->ref[FW_SCATTER] != Py_True ||
                self->ref[FW_LOCK] == Py_None ||
                (!frame_max && blen > 0xFFFFFFF0) ||
                (uint64_t)frame_max > 0xFFFFFFFFu)  /* (set by hand: the
                                                       pure writer's error) */
                goto pure;
            scatter = 1;
        }
        PyObject *properties = message_attr(content, str_properties);
        if (properties == NULL)
            goto fail;
        if (properties == Py_None || (PyDict_CheckExact(properties) &&
                                      PyDict_Size(properties) == 0)) {
            /* no properties: the flags word alone, as the pure encoder
               returns it (without calling it once per publish) */
            props = no_properties;
            Py_INCREF(props);
        } else
            props = PyObject_CallFunctionObjArgs(self->ref[FW_ENCODE_PROPS],
                                                 properties, NULL);
        Py_DECREF(properties);
        if (props == NULL)
            goto fail;
        if (!PyBytes_Check(props))
            goto pure;
        plen = PyBytes_Size(props);
        if (plen > 0xFFFFFF00 || (frame_max && plen + 20 > frame_max))
            goto pure;
        nframes = blen ? 3 : 2;
    }
    if (scatter) {
        Py_ssize_t nbody = 0;
        int done = fw_write_scatter(self, (unsigned)type_, (unsigned)channel,
                                    class_id, method_id, margs, alen, props,
                                    plen, body, blen, frame_max, &nbody);
        if (done < 0)
            goto fail;
        if (done == 0)
            goto pure;
        Py_DECREF(props);
        Py_DECREF(body);
        if (add_to_attr(self->ref[FW_CONN], str_bytes_sent, 2 + nbody) < 0)
            return -1;
        return 1;
    }
    Py_ssize_t total = 12 + alen;
    if (content != Py_None)
        total += 20 + plen + (blen ? 8 + blen : 0);
    frame = PyBytes_FromStringAndSize(NULL, total);
    if (frame == NULL)
        goto fail;
    unsigned char *o = put_method_and_header(
        (unsigned char *)PyBytes_AsString(frame), (unsigned)type_,
        (unsigned)channel, class_id, method_id, margs, alen,
        content != Py_None ? props : NULL, plen, blen);
    if (blen) {
        o = put_frame_header(o, 3, (unsigned)channel, (uint32_t)blen);
        memcpy(o, PyBytes_AsString(body), (size_t)blen);
        o += blen;
        *o++ = 0xCE;
    }
    int direct = self->ref[FW_LOCK] == Py_None ? 0 :
        send_plain(self->ref, frame, content == Py_None &&
                   is_held_method(class_id, method_id));
    if (direct < 0)
        goto fail;
    if (!direct) {
        PyObject *r = PyObject_CallFunctionObjArgs(self->ref[FW_WRITE], frame,
                                                   NULL);
        if (r == NULL)
            goto fail;
        Py_DECREF(r);
    }
    Py_DECREF(frame);
    Py_XDECREF(props);
    Py_XDECREF(body);
    if (add_to_attr(self->ref[FW_CONN], str_bytes_sent, nframes) < 0)
        return -1;
    return 1;
fail:
    Py_XDECREF(frame);
    Py_XDECREF(props);
    Py_XDECREF(body);
    return -1;
pure:
    Py_XDECREF(props);
    Py_XDECREF(body);
    return 0;
}

static PyObject *FrameWriter_call(PyObject *op, PyObject *args,
                                  PyObject *kwargs)
{
    Holder *self = (Holder *)op;
    PyObject *type_obj, *channel_obj, *sig, *margs, *content = Py_None;
    if (kwargs != NULL && PyDict_Size(kwargs))
        goto pure;
    if (!PyArg_UnpackTuple(args, "write_frame", 4, 5, &type_obj,
                           &channel_obj, &sig, &margs, &content))
        return NULL;
    if (margs == Py_None)
        margs = NULL;
    else if (!PyBytes_Check(margs))
        goto pure;
    if (!PyLong_Check(type_obj) || !PyLong_Check(channel_obj) ||
        !PyTuple_Check(sig) || PyTuple_Size(sig) != 2)
        goto pure;
    long type_ = PyLong_AsLong(type_obj);
    long channel = PyLong_AsLong(channel_obj);
    long class_id = PyLong_AsLong(PyTuple_GetItem(sig, 0));
    long method_id = PyLong_AsLong(PyTuple_GetItem(sig, 1));
    if (PyErr_Occurred()) {
        PyErr_Clear();
        goto pure;
    }
    int done = fw_write(self, type_, channel, class_id, method_id, margs,
                        content);
    if (done < 0)
        return NULL;
    if (done)
        Py_RETURN_NONE;
pure:
    return PyObject_Call(self->ref[FW_PURE], args, kwargs);
}

static PyObject *FrameWriter_new(PyTypeObject *type, PyObject *args,
                                 PyObject *kwargs)
{
    Holder *self = (Holder *)holder_keeping(type, args, kwargs, FW_ACQUIRE,
                                            FW_NREFS, "FrameWriter");
    PyObject *lock = self == NULL ? NULL : self->ref[FW_LOCK];
    if (lock == NULL || lock == Py_None)
        return (PyObject *)self;
    PyObject *acquire = PyObject_GetAttr(lock, str_acquire);
    PyObject *release = acquire ? PyObject_GetAttr(lock, str_release) : NULL;
    if (release == NULL) {
        Py_XDECREF(acquire);
        Py_DECREF(self);
        return NULL;
    }
    Py_DECREF(self->ref[FW_ACQUIRE]);   /* (None until now) */
    Py_DECREF(self->ref[FW_RELEASE]);
    self->ref[FW_ACQUIRE] = acquire;
    self->ref[FW_RELEASE] = release;
    return (PyObject *)self;
}

HOLDER_TYPE_NEW(FrameWriter,
            "FrameWriter(pure, connection, write, encode_properties, "
            "message_type, transport, write_lock, scatter): "
            "write_frame(type_, "
            "channel, method_sig, args, content=None), the compiled twin "
            "of the function "
            "frame_writer returns.")

/* ---------------------------------------------------------------------
 * Publish(pure, channel, channel_id, confirms, encode_args, message_type,
 * writer_type, method_sig): basic_publish(msg, exchange='',
 * routing_key='', mandatory=False, immediate=False, timeout=None,
 * confirm_timeout=None), the twin of the channel's bound _basic_publish
 * (``pure``) for its common case: an open channel, on a connection that is
 * not blocked and has its compiled frame writer; a Message with a bytes
 * body, str names, bool flags, no timeouts.  In confirm mode the publish
 * is recorded first (``confirms.published``), its tag returned, and a
 * write that raises is reported to ``channel._publish_failed(tag)``.
 * Everything else -- any other argument, any other state, every error --
 * is the pure method's, called on the same arguments.  The channel's
 * state is only read here (through the attribute protocol: reading an
 * instance's __dict__ would turn its inline attributes into a dict, which
 * costs every Python attribute access on it more than it saves here); the
 * pure method and the channel own it.  ``channel_id`` and ``confirms``
 * (the channel's Confirms) are given once: a channel sets both when it
 * is made and never again.  The encoded arguments of the last
 * destination are kept, as the pure method keeps them. */

enum { PB_PURE, PB_CHANNEL, PB_CHANNEL_ID, PB_CONFIRMS, PB_ENCODE,
       PB_MESSAGE, PB_WRITER_TYPE, PB_SIG,
       /* kept: the last destination and its encoded arguments */
       PB_EXCHANGE, PB_RKEY, PB_MANDATORY, PB_IMMEDIATE, PB_PAYLOAD,
       PB_NREFS };

static PyObject *str_published, *str_publish_failed;
static PyObject *str_is_open, *str_connection, *str_selected, *str_blocked,
    *str_frame_writer, *str_empty, *publish_keywords[7];

static PyObject *Publish_new(PyTypeObject *type, PyObject *args,
                             PyObject *kwargs)
{
    return holder_keeping(type, args, kwargs, PB_EXCHANGE, PB_NREFS,
                          "Publish");
}

/* obj.name, or NULL with no error set when it cannot be read */
static PyObject *quiet_attr(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        PyErr_Clear();
    return v;
}

/* 1 when the channel is in the state the twin handles; ``*writer`` (a
   new reference), ``*channel_id`` and ``*confirming`` (whether the channel
   is in confirm mode) are then set. */
static int publish_state(PyObject **ref, PyObject **writer, long *channel_id,
                         int *confirming)
{
    int ok = 0;
    PyObject *channel = ref[PB_CHANNEL];
    PyObject *conn = NULL, *v = NULL;
    v = quiet_attr(channel, str_is_open);
    if (v != Py_True)
        goto done;
    Py_CLEAR(v);
    conn = quiet_attr(channel, str_connection);
    if (conn == NULL || conn == Py_None)
        goto done;
    v = quiet_attr(ref[PB_CONFIRMS], str_selected);
    if (v != Py_False && v != Py_True)
        goto done;
    *confirming = v == Py_True;
    Py_CLEAR(v);
    v = quiet_attr(conn, str_blocked);
    if (v != Py_None)
        goto done;
    Py_CLEAR(v);
    *channel_id = PyLong_AsLong(ref[PB_CHANNEL_ID]);
    if (*channel_id == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        goto done;
    }
    v = quiet_attr(conn, str_frame_writer);
    if (v == NULL || (PyObject *)Py_TYPE(v) != ref[PB_WRITER_TYPE])
        goto done;
    *writer = v;
    v = NULL;
    ok = 1;
done:
    Py_XDECREF(v);
    Py_XDECREF(conn);
    return ok;
}

/* a str equal to the kept one (the same object, usually) */
static int same_str(PyObject *kept, PyObject *s)
{
    return kept == s || (kept != Py_None && PyUnicode_Compare(kept, s) == 0);
}

static PyObject *Publish_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Holder *self = (Holder *)op;
    Py_ssize_t n = PyTuple_Size(args);
    if (n < 1 || n > 7)
        goto pure;
    /* msg, exchange, routing_key, mandatory, immediate, timeout,
       confirm_timeout: the last two only as None, kombu passes them */
    PyObject *v[7] = {NULL, str_empty, str_empty, Py_False, Py_False,
                      Py_None, Py_None};
    for (Py_ssize_t k = 0; k < n; k++)
        v[k] = PyTuple_GetItem(args, k);
    if (kwargs != NULL && PyDict_Size(kwargs)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(kwargs, &pos, &key, &value)) {
            int k = 1;
            while (k < 7 && key != publish_keywords[k] &&
                   !(PyUnicode_Check(key) &&
                     PyUnicode_Compare(key, publish_keywords[k]) == 0))
                k++;
            if (PyErr_Occurred())
                return NULL;
            if (k == 7 || k < n)    /* another keyword, or one given twice */
                goto pure;
            v[k] = value;
        }
    }
    if (v[5] != Py_None || v[6] != Py_None)
        goto pure;
    PyObject *msg = v[0], *exchange = v[1], *rkey = v[2];
    if ((PyObject *)Py_TYPE(msg) != self->ref[PB_MESSAGE] ||
        !PyUnicode_CheckExact(exchange) || !PyUnicode_CheckExact(rkey) ||
        (v[3] != Py_True && v[3] != Py_False) ||
        (v[4] != Py_True && v[4] != Py_False))
        goto pure;
    PyObject *body = PyObject_GenericGetAttr(msg, str_body);
    if (body == NULL) {
        PyErr_Clear();
        goto pure;
    }
    int bytes_body = PyBytes_CheckExact(body);
    Py_DECREF(body);
    if (!bytes_body)
        goto pure;
    PyObject *writer = NULL;
    long channel_id = 0;
    int confirming = 0;
    if (!publish_state(self->ref, &writer, &channel_id, &confirming))
        goto pure;
    PyObject **ref = self->ref;
    if (!(v[3] == ref[PB_MANDATORY] && v[4] == ref[PB_IMMEDIATE] &&
          same_str(ref[PB_EXCHANGE], exchange) &&
          same_str(ref[PB_RKEY], rkey))) {
        PyObject *payload = PyObject_CallFunctionObjArgs(
            ref[PB_ENCODE], exchange, rkey, v[3], v[4], NULL);
        if (payload == NULL || !PyBytes_CheckExact(payload)) {
            Py_DECREF(writer);
            if (payload == NULL)
                return NULL;
            Py_DECREF(payload);
            goto pure;
        }
        PyObject *old[5] = {ref[PB_EXCHANGE], ref[PB_RKEY],
                            ref[PB_MANDATORY], ref[PB_IMMEDIATE],
                            ref[PB_PAYLOAD]};
        Py_INCREF(exchange);
        Py_INCREF(rkey);
        Py_INCREF(v[3]);
        Py_INCREF(v[4]);
        ref[PB_EXCHANGE] = exchange;
        ref[PB_RKEY] = rkey;
        ref[PB_MANDATORY] = v[3];
        ref[PB_IMMEDIATE] = v[4];
        ref[PB_PAYLOAD] = payload;
        for (int k = 0; k < 5; k++)
            Py_DECREF(old[k]);
    }
    PyObject *payload = ref[PB_PAYLOAD];
    Py_INCREF(payload);
    PyObject *tag = NULL;
    if (confirming) {
        /* the tag is recorded before the write (see _basic_publish) */
        tag = PyObject_CallMethodObjArgs(ref[PB_CONFIRMS], str_published,
                                         Py_None, v[3], exchange, rkey,
                                         NULL);
        if (tag == NULL) {
            Py_DECREF(payload);
            Py_DECREF(writer);
            return NULL;
        }
    }
    PyObject *sig = ref[PB_SIG];
    int done = fw_write((Holder *)writer, 1, channel_id,
                        PyLong_AsLong(PyTuple_GetItem(sig, 0)),
                        PyLong_AsLong(PyTuple_GetItem(sig, 1)), payload, msg);
    if (done == 0) {
        /* the writer's general case (a large body, properties it does not
           encode itself): its pure function, as the writer would call */
        PyObject *t = PyLong_FromLong(1), *c = PyLong_FromLong(channel_id);
        PyObject *r = (t && c) ? PyObject_CallFunctionObjArgs(
            ((Holder *)writer)->ref[FW_PURE], t, c, sig, payload, msg,
            NULL) : NULL;
        Py_XDECREF(t);
        Py_XDECREF(c);
        Py_XDECREF(r);
        done = r == NULL ? -1 : 1;
    }
    Py_DECREF(payload);
    Py_DECREF(writer);
    if (done < 0) {
        if (tag != NULL) {
            /* the channel withdraws the tag when nothing was sent; its
               own error, should it raise, replaces the write's */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyObject *r = PyObject_CallMethodObjArgs(
                ref[PB_CHANNEL], str_publish_failed, tag, NULL);
            if (r == NULL) {
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            } else {
                Py_DECREF(r);
                PyErr_Restore(type, value, tb);
            }
            Py_DECREF(tag);
        }
        return NULL;
    }
    if (tag != NULL)
        return tag;
    Py_RETURN_NONE;
pure:
    return PyObject_Call(self->ref[PB_PURE], args, kwargs);
}

/* __wrapped__: the pure method, so that inspect.signature() and help()
   in a REPL show basic_publish's parameters */
static PyObject *Publish_wrapped(PyObject *op, void *closure)
{
    (void)closure;
    PyObject *pure = ((Holder *)op)->ref[PB_PURE];
    Py_INCREF(pure);
    return pure;
}

static PyGetSetDef Publish_getset[] = {
    {"__wrapped__", Publish_wrapped, NULL,
     "the pure method this twin stands for", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Publish_slots[] = {
    {Py_tp_new, Publish_new}, {Py_tp_call, Publish_call}, HOLDER_SLOTS,
    {Py_tp_getset, Publish_getset},
    {Py_tp_doc, "Publish(pure, channel, channel_id, confirms, encode_args, "
                "message_type, writer_type, method_sig): "
                "basic_publish(msg, exchange='', "
                "routing_key='', mandatory=False, immediate=False, "
                "timeout=None, confirm_timeout=None), the compiled twin of "
                "a channel's bound _basic_publish for its common case."},
    {0, NULL},
};

static PyType_Spec Publish_spec = {
    "amqp._speedups.Publish", sizeof(Holder), 0, HOLDER_FLAGS, Publish_slots,
};

/* ---------------------------------------------------------------------
 * ArgsEncoder(fmt, pure): encode(values) -> bytes, the twin of the pure
 * encoder serialization makes for ``fmt`` (octets, shorts, longs,
 * long-longs, bits and shortstrs only).  Values of exactly the expected
 * types and ranges are encoded here; anything else (a bool for an int,
 * an int subclass, a shortstr over 255 bytes, ...) goes to ``pure``,
 * which converts it or raises the error naming the field. */

/* ---------------------------------------------------------------------
 * Pump(reader, frames, next_frame, failed, monotonic, size): the reply
 * loop of Reader._pump in its common case, one call per wait.
 * pump(sock, handler, deadline, quantum, done=None) parses what is
 * buffered with ``handler`` and returns True once the reader stopped at
 * the reply waited for or parsed anything; else it receives ``size``
 * bytes at most (one blocking ``sock.recv``, which SO_RCVTIMEO ends
 * within ``quantum``) and parses again.  It returns False, having
 * received nothing, when the Python loop must take over: ``deadline``
 * (monotonic seconds, or None) is less than ``quantum`` away, the receive
 * would block (the quantum passed), or the buffer collects a large body.
 * A failed receive or the peer closing is ``failed(sock, exc_or_None)``'s:
 * it returns what to raise (having marked the connection lost), or None
 * to go on in Python (EINTR).  ``done``: a confirm wait's condition (see
 * Reader._turn).  The caller checks the conditions of Transport.recv_now
 * other than the deadline (Transport.plain_sock); keep this in step with
 * Reader._pump and _fill. */

enum { PU_READER, PU_FRAMES, PU_NEXT, PU_FAILED, PU_MONOTONIC, PU_SIZE,
       PU_NREFS };

static PyObject *str_stopped, *str_parsed, *str_last_read, *str_recv,
    *str_feed;

/* ``failed(sock, exc)``: raise what it returns, or return False (the
   Python loop goes on) when it returns None */
static PyObject *pump_failed(Holder *self, PyObject *sock, PyObject *exc)
{
    PyObject *lost = PyObject_CallFunctionObjArgs(
        self->ref[PU_FAILED], sock, exc ? exc : Py_None, NULL);
    if (lost == NULL)
        return NULL;
    if (lost == Py_None) {
        Py_DECREF(lost);
        Py_RETURN_FALSE;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(lost), lost);
    Py_DECREF(lost);
    return NULL;
}

static PyObject *Pump_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Holder *self = (Holder *)op;
    PyObject *sock, *handler, *deadline, *done = Py_None;
    double quantum;
    if (!PyArg_ParseTuple(args, "OOOd|O:Pump", &sock, &handler, &deadline,
                          &quantum, &done))
        return NULL;
    PyObject *reader = self->ref[PU_READER], *frames = self->ref[PU_FRAMES];
    double until = 0.0;
    if (deadline != Py_None) {
        until = PyFloat_AsDouble(deadline);
        if (until == -1.0 && PyErr_Occurred())
            return NULL;
    }
    for (;;) {
        PyObject *frame = PyObject_CallObject(self->ref[PU_NEXT], NULL);
        if (frame == NULL)
            return NULL;
        while (frame != Py_None) {
            PyObject *r = PyObject_CallFunctionObjArgs(handler, frame, NULL);
            Py_DECREF(frame);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
            int stopped = attr_truth(reader, str_stopped);
            if (stopped < 0)
                return NULL;
            if (stopped) {
                /* a confirm wait whose ack was dispatched as it came: read
                   on while ``done()`` is false and nothing waits in
                   ``_parsed`` (see Reader._turn) */
                if (done == Py_None)
                    Py_RETURN_TRUE;
                int parsed = attr_truth(reader, str_parsed);
                if (parsed < 0)
                    return NULL;
                if (parsed)
                    Py_RETURN_TRUE;
                PyObject *d = PyObject_CallObject(done, NULL);
                if (d == NULL)
                    return NULL;
                int finished = PyObject_IsTrue(d);
                Py_DECREF(d);
                if (finished < 0)
                    return NULL;
                if (finished)
                    Py_RETURN_TRUE;
                if (PyObject_SetAttr(reader, str_stopped, Py_False) < 0)
                    return NULL;
            }
            frame = PyObject_CallObject(self->ref[PU_NEXT], NULL);
            if (frame == NULL)
                return NULL;
        }
        Py_DECREF(frame);
        int parsed = attr_truth(reader, str_parsed);
        if (parsed < 0)
            return NULL;
        if (parsed)
            Py_RETURN_TRUE;
        if (deadline != Py_None) {
            PyObject *now = PyObject_CallObject(self->ref[PU_MONOTONIC],
                                                NULL);
            double t = now == NULL ? -1.0 : PyFloat_AsDouble(now);
            Py_XDECREF(now);
            if (t == -1.0 && PyErr_Occurred())
                return NULL;
            if (until - t < quantum)
                Py_RETURN_FALSE;
        }
        int busy = attr_truth(frames, str_collecting);
        if (busy < 0)
            return NULL;
        if (busy)
            Py_RETURN_FALSE;
        PyObject *data = PyObject_CallMethodObjArgs(sock, str_recv,
                                                    self->ref[PU_SIZE], NULL);
        if (data == NULL) {
            if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                PyErr_ExceptionMatches(PyExc_TimeoutError)) {
                /* (the quantum passed: the Python loop receives again) */
                PyErr_Clear();
                Py_RETURN_FALSE;
            }
            if (!PyErr_ExceptionMatches(PyExc_OSError))
                return NULL;
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (tb != NULL && value != NULL)
                PyException_SetTraceback(value, tb);
            Py_XDECREF(type);
            Py_XDECREF(tb);
            if (value == NULL)
                return NULL;
            PyObject *r = pump_failed(self, sock, value);
            Py_DECREF(value);
            return r;
        }
        if (!PyBytes_Check(data)) {
            Py_DECREF(data);
            PyErr_SetString(PyExc_TypeError, "sock.recv returned no bytes");
            return NULL;
        }
        if (PyBytes_Size(data) == 0) {
            Py_DECREF(data);
            return pump_failed(self, sock, NULL);
        }
        PyObject *now = PyObject_CallObject(self->ref[PU_MONOTONIC], NULL);
        if (now == NULL || PyObject_SetAttr(reader, str_last_read, now) < 0) {
            Py_XDECREF(now);
            Py_DECREF(data);
            return NULL;
        }
        Py_DECREF(now);
        /* frames.feed(data); inline when every byte was consumed */
        PyObject *buf = PyObject_GetAttr(frames, str_buf);
        if (buf == NULL) {
            Py_DECREF(data);
            return NULL;
        }
        Py_ssize_t pos = int_attr(frames, str_pos);
        int fed;
        if (pos == -1 && PyErr_Occurred()) {
            fed = -1;
        } else if (PyBytes_Check(buf) && PyBytes_Size(buf) - pos <= 0) {
            fed = PyObject_SetAttr(frames, str_buf, data);
            if (fed == 0 && pos != 0) {
                PyObject *zero = PyLong_FromLong(0);
                fed = zero ? PyObject_SetAttr(frames, str_pos, zero) : -1;
                Py_XDECREF(zero);
            }
        } else {
            PyObject *r = PyObject_CallMethodObjArgs(frames, str_feed, data,
                                                     NULL);
            fed = r == NULL ? -1 : 0;
            Py_XDECREF(r);
        }
        Py_DECREF(buf);
        Py_DECREF(data);
        if (fed < 0)
            return NULL;
    }
}

HOLDER_TYPE(Pump, PU_NREFS,
            "Pump(reader, frames, next_frame, failed, monotonic, size): "
            "pump(sock, handler, deadline, quantum, done=None) -> bool, "
            "the reply loop of Reader._pump in its common case.")

/* ---------------------------------------------------------------------
 * NotIn(key, container): not_in() -> ``key not in container``, a wait's
 * condition (a publisher confirm wait: its tag no longer unsettled) asked
 * without a Python frame each time. */

enum { NI_KEY, NI_CONTAINER, NI_NREFS };

static PyObject *NotIn_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    Holder *self = (Holder *)op;
    if (PyTuple_Size(args) || (kwargs != NULL && PyDict_Size(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "NotIn() takes no arguments");
        return NULL;
    }
    int found = PySequence_Contains(self->ref[NI_CONTAINER],
                                    self->ref[NI_KEY]);
    if (found < 0)
        return NULL;
    return PyBool_FromLong(!found);
}

HOLDER_TYPE(NotIn, NI_NREFS,
            "NotIn(key, container): not_in() -> key not in container.")

typedef FmtCodec ArgsEncoder;

static PyObject *ArgsEncoder_new(PyTypeObject *type, PyObject *args,
                                 PyObject *kwargs)
{
    return fmt_codec_new(type, args, "oBlLbs", 0);
}

static PyObject *ArgsEncoder_call(PyObject *op, PyObject *args,
                                  PyObject *kwargs)
{
    ArgsEncoder *self = (ArgsEncoder *)op;
    PyObject *values;
    if (!PyArg_UnpackTuple(args, "encode", 1, 1, &values))
        return NULL;
    Py_ssize_t n = self->nfields;
    if (!(PyTuple_CheckExact(values) || PyList_CheckExact(values)) ||
        PySequence_Size(values) != n)
        goto pure;
    /* sizes first: every value checked before anything is built */
    unsigned char out[MAX_FIELDS * 256 + 8];
    unsigned char *o = out;
    const char *f = self->fmt;
    Py_ssize_t k = 0;
    while (k < n) {
        char c = f[k];
        PyObject *v = PyTuple_CheckExact(values) ?
            PyTuple_GetItem(values, k) : PyList_GetItem(values, k);
        if (c == 'b') {
            unsigned octet = 0;
            for (int bit = 0; bit < 8 && k < n && f[k] == 'b'; bit++, k++) {
                v = PyTuple_CheckExact(values) ?
                    PyTuple_GetItem(values, k) : PyList_GetItem(values, k);
                if (v == Py_True)
                    octet |= 1u << bit;
                else if (v != Py_False)
                    goto pure;
            }
            *o++ = (unsigned char)octet;
            continue;
        }
        if (c == 's') {
            if (!PyUnicode_CheckExact(v))
                goto pure;
            Py_ssize_t len;
            PyObject *raw = PyUnicode_AsUTF8String(v);
            if (raw == NULL) {
                PyErr_Clear();
                goto pure;
            }
            len = PyBytes_Size(raw);
            if (len > 255) {
                Py_DECREF(raw);
                goto pure;
            }
            *o++ = (unsigned char)len;
            memcpy(o, PyBytes_AsString(raw), (size_t)len);
            o += len;
            Py_DECREF(raw);
            k++;
            continue;
        }
        if (!PyLong_CheckExact(v))
            goto pure;
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        unsigned long long u;
        if (overflow > 0) {
            u = PyLong_AsUnsignedLongLong(v);
            if (u == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                goto pure;
            }
        } else if (overflow < 0 || x < 0) {
            goto pure;
        } else {
            u = (unsigned long long)x;
        }
        int width = c == 'o' ? 1 : c == 'B' ? 2 : c == 'l' ? 4 : 8;
        if (width < 8 && u >> (8 * width))
            goto pure;
        for (int byte = width - 1; byte >= 0; byte--)
            *o++ = (unsigned char)(u >> (8 * byte));
        k++;
    }
    return PyBytes_FromStringAndSize((const char *)out, o - out);
pure:
    return PyObject_CallFunctionObjArgs(self->pure, values, NULL);
}

static PyType_Slot ArgsEncoder_slots[] = {
    {Py_tp_new, ArgsEncoder_new},
    {Py_tp_dealloc, FmtCodec_dealloc},
    {Py_tp_call, ArgsEncoder_call},
    {Py_tp_doc, "ArgsEncoder(fmt, pure): encode(values) -> bytes, the "
                "compiled twin of the pure encoder for ``fmt``."},
    {0, NULL},
};

static PyType_Spec ArgsEncoder_spec = {
    "amqp._speedups.ArgsEncoder", sizeof(FmtCodec), 0,
    Py_TPFLAGS_DEFAULT, ArgsEncoder_slots,
};

/* ---------------------------------------------------------------------
 * body_buffer(n) -> (bytes, memoryview): a new bytes object of n bytes
 * and a writable view of its contents, for a large body to be received
 * straight into the object the message keeps (no copy into it after).
 * The view does not keep the bytes alive: the caller keeps both, writes
 * only before handing the bytes out, and drops the view then. */

static PyObject *body_buffer(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 2) {
        /* (the empty and one-byte bytes objects may be shared) */
        PyErr_SetString(PyExc_ValueError, "body_buffer: size below 2");
        return NULL;
    }
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b == NULL)
        return NULL;
    PyObject *view = PyMemoryView_FromMemory(PyBytes_AsString(b), n,
                                             PyBUF_WRITE);
    if (view == NULL) {
        Py_DECREF(b);
        return NULL;
    }
    return Py_BuildValue("(NN)", b, view);
}

/* *slot = value, keeping a reference (and dropping the old one) */
static void keep(PyObject **slot, PyObject *value)
{
    Py_INCREF(value);
    Py_XDECREF(*slot);
    *slot = value;
}

static PyObject *configure_args(PyObject *self, PyObject *args)
{
    PyObject *s, *a, *t;
    if (!PyArg_UnpackTuple(args, "configure_args", 3, 3, &s, &a, &t))
        return NULL;
    keep(&dec_str, s);
    keep(&dec_array, a);
    keep(&dec_timestamp, t);
    Py_RETURN_NONE;
}

static PyObject *configure(PyObject *self, PyObject *args)
{
    PyObject *plan, *table, *twin;
    if (!PyArg_UnpackTuple(args, "configure", 3, 3, &plan, &table, &twin))
        return NULL;
    if (!PyTuple_Check(plan) || PyTuple_Size(plan) != 14) {
        PyErr_SetString(PyExc_ValueError,
                        "plan: 14 (name, format) pairs for flag bits 15..2");
        return NULL;
    }
    for (int k = 0; k < 14; k++) {
        PyObject *pair = PyTuple_GetItem(plan, k);
        PyObject *name, *fmt;
        if (pair == NULL || !PyArg_ParseTuple(pair, "UU", &name, &fmt))
            return NULL;
        char letter = 0;
        static const char LETTERS[] = "soTF";
        for (const char *l = LETTERS; *l; l++) {
            char one[2] = {*l, 0};
            if (PyUnicode_CompareWithASCIIString(fmt, one) == 0)
                letter = *l;
        }
        if (letter == 0) {
            PyErr_Format(PyExc_ValueError, "unknown property format %R", fmt);
            return NULL;
        }
        int bit = 15 - k;
        keep(&prop_names[bit], name);
        prop_formats[bit] = letter;
        Py_CLEAR(caches[bit].value);
    }
    keep(&dec_table, table);
    keep(&pure_twin, twin);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode_properties_basic", decode_properties_basic, METH_VARARGS,
     "decode_properties_basic(buf, offset=0) -> (properties, offset): the "
     "compiled twin of amqp.serialization's."},
    {"body_buffer", body_buffer, METH_O,
     "body_buffer(n) -> (bytes, memoryview): a new bytes object of n bytes "
     "(n >= 2) and a writable view of it, to receive a body into."},
    {"configure", configure, METH_VARARGS,
     "configure(plan, dec_table, pure_twin): what the property flags mean, "
     "the field-table decoder and the pure decoder (called on malformed "
     "input, so that errors are the pure path's)."},
    {"configure_args", configure_args, METH_VARARGS,
     "configure_args(dec_str, dec_array, dec_timestamp): the pure helpers "
     "ArgsDecoder calls for longstrs, arrays and timestamps (tables: "
     "configure's dec_table)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "amqp._speedups",
    "Compiled twins of pure functions of amqp.serialization.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *type = PyType_FromSpec(&ArgsDecoder_spec);
    if (type == NULL || PyModule_AddObject(m, "ArgsDecoder", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(m);
        return NULL;
    }
    static struct { PyType_Spec *spec; const char *name; } types[] = {
        {&ContentTaker_spec, "ContentTaker"},
        {&NextFrame_spec, "NextFrame"},
        {&FrameHandler_spec, "FrameHandler"},
        {&FrameWriter_spec, "FrameWriter"},
        {&ArgsEncoder_spec, "ArgsEncoder"},
        {&Pump_spec, "Pump"},
        {&Publish_spec, "Publish"},
        {&NotIn_spec, "NotIn"},
    };
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        type = PyType_FromSpec(types[k].spec);
        if (type == NULL || PyModule_AddObject(m, types[k].name, type) < 0) {
            Py_XDECREF(type);
            Py_DECREF(m);
            return NULL;
        }
    }
    if ((str_buf = PyUnicode_InternFromString("buf")) == NULL ||
        (str_pos = PyUnicode_InternFromString("pos")) == NULL ||
        (str_collecting = PyUnicode_InternFromString("collecting")) == NULL ||
        (str_max_payload = PyUnicode_InternFromString("max_payload")) == NULL ||
        (str_collect_min = PyUnicode_InternFromString("collect_min")) == NULL ||
        (str_take_content = PyUnicode_InternFromString("take_content")) ==
            NULL ||
        (no_properties = PyBytes_FromStringAndSize("\0\0", 2)) == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    static struct { PyObject **slot; const char *text; } names[] = {
        {&str_next_frame, "next_frame"},
        {&str_max_body, "max_body"}, {&str_bytes_recv, "bytes_recv"},
        {&str_bytes_sent, "bytes_sent"}, {&str_frame_max, "frame_max"},
        {&str_max_message_size, "max_message_size"}, {&str_body, "body"},
        {&str_properties, "properties"}, {&str_channel, "channel"},
        {&str_delivery_info, "delivery_info"},
        {&str_frame_method, "frame_method"}, {&str_frame_args, "frame_args"},
        {&str_body_size, "body_size"}, {&str_acquire, "acquire"},
        {&str_release, "release"}, {&str_plain_writes, "_plain_writes"},
        {&str_holding, "holding"},
        {&str_overrides, "_overrides"}, {&str_sock, "sock"},
        {&str_send, "send"}, {&str_write_failed, "_write_failed"},
        {&str_write_rest, "_write"},
        {&str_stopped, "_stopped"}, {&str_parsed, "_parsed"},
        {&str_last_read, "last_read"}, {&str_recv, "recv"},
        {&str_feed, "feed"},
        {&str_is_open, "is_open"}, {&str_connection, "connection"},
        {&str_selected, "selected"}, {&str_blocked, "blocked"},
        {&str_published, "published"},
        {&str_publish_failed, "_publish_failed"},
        {&str_frame_writer, "_frame_writer"}, {&str_empty, ""},
        {&publish_keywords[1], "exchange"},
        {&publish_keywords[2], "routing_key"},
        {&publish_keywords[3], "mandatory"},
        {&publish_keywords[4], "immediate"},
        {&publish_keywords[5], "timeout"},
        {&publish_keywords[6], "confirm_timeout"}, {&str_fileno, "fileno"},
    };
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if ((*names[k].slot = PyUnicode_InternFromString(names[k].text)) ==
            NULL) {
        Py_DECREF(m);
        return NULL;
    }
    /* socket.socket: the one class whose descriptor send_now writes to */
    PyObject *socket_module = PyImport_ImportModule("socket");
    if (socket_module == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    socket_type = PyObject_GetAttrString(socket_module, "socket");
    Py_DECREF(socket_module);
    if (socket_type == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
