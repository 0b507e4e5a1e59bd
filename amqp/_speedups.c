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
    PyObject *result = Py_BuildValue("(Nn)", props, i);
    return result;
fail:
    Py_DECREF(props);
    return NULL;
slow_props:
    Py_DECREF(props);
slow:
    if (offset_obj == NULL) {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL)
            return NULL;
        PyObject *r = pure(buf, zero);
        Py_DECREF(zero);
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

typedef struct {
    PyObject_HEAD
    char fmt[MAX_FIELDS + 1];
    Py_ssize_t nfields;
    PyObject *pure;
    StrCache *strings;           /* one per field (shortstrs only) */
} ArgsDecoder;

static void ArgsDecoder_dealloc(PyObject *op)
{
    ArgsDecoder *self = (ArgsDecoder *)op;
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

static PyObject *ArgsDecoder_new(PyTypeObject *type, PyObject *args,
                                 PyObject *kwargs)
{
    PyObject *fmt, *pure;
    if (!PyArg_ParseTuple(args, "UO", &fmt, &pure))
        return NULL;
    PyObject *ascii = PyUnicode_AsASCIIString(fmt);
    if (ascii == NULL)
        return NULL;
    const char *f = PyBytes_AsString(ascii);
    Py_ssize_t n = PyBytes_Size(ascii);
    if (n > MAX_FIELDS || strspn(f, "oBlLfsSxFATb") != (size_t)n) {
        Py_DECREF(ascii);
        PyErr_Format(PyExc_ValueError, "format %R: not for ArgsDecoder", fmt);
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    ArgsDecoder *self = (ArgsDecoder *)alloc(type, 0);
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
    self->strings = PyMem_Calloc((size_t)(n ? n : 1), sizeof(StrCache));
    if (self->strings == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
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
    return Py_BuildValue("(Nn)", values, i);
slow:
    Py_DECREF(values);
    return PyObject_CallFunctionObjArgs(self->pure, buf, offset_obj, NULL);
fail:
    Py_DECREF(values);
    return NULL;
}

static PyType_Slot ArgsDecoder_slots[] = {
    {Py_tp_new, ArgsDecoder_new},
    {Py_tp_dealloc, ArgsDecoder_dealloc},
    {Py_tp_call, ArgsDecoder_call},
    {Py_tp_doc, "ArgsDecoder(fmt, pure): decoder(buf, offset) -> "
                "([values], offset), the compiled twin of the pure decoder "
                "serialization.decoder_for(fmt) makes (``pure``)."},
    {0, NULL},
};

static PyType_Spec ArgsDecoder_spec = {
    "amqp._speedups.ArgsDecoder", sizeof(ArgsDecoder), 0,
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
    result = Py_BuildValue("(y#y#)", (const char *)b + hstart,
                           hend - hstart, (const char *)b + bstart,
                           bend - bstart);
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
    type = PyType_FromSpec(&ContentTaker_spec);
    if (type == NULL || PyModule_AddObject(m, "ContentTaker", type) < 0) {
        Py_XDECREF(type);
        Py_DECREF(m);
        return NULL;
    }
    if ((str_buf = PyUnicode_InternFromString("buf")) == NULL ||
        (str_pos = PyUnicode_InternFromString("pos")) == NULL ||
        (str_collecting = PyUnicode_InternFromString("collecting")) == NULL ||
        (str_max_payload = PyUnicode_InternFromString("max_payload")) == NULL ||
        (str_collect_min = PyUnicode_InternFromString("collect_min")) == NULL ||
        (str_take_content = PyUnicode_InternFromString("take_content")) ==
            NULL) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
