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
#include <string.h>

/* Property bits 15..2 (bit 15 is the first property): name and format
 * letter, from configure(). */
static PyObject *prop_names[16];
static char prop_formats[16];
static PyObject *dec_table;      /* tables.dec_table(buf, offset, end) */
static PyObject *pure_twin;      /* serialization's pure decoder */

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
        PyObject *value;
        switch (prop_formats[bit]) {
        case 's': {
            if (i >= end)
                goto slow_props;
            Py_ssize_t n = b[i];
            if (i + 1 + n > end)
                goto slow_props;
            value = shortstr((const char *)b + i + 1, n, &caches[bit]);
            i += 1 + n;
            break;
        }
        case 'o':
            if (i >= end)
                goto slow_props;
            value = PyLong_FromLong(b[i]);
            i += 1;
            break;
        case 'T':
            if (end - i < 8)
                goto slow_props;
            value = PyLong_FromUnsignedLongLong(u64(b + i));
            i += 8;
            break;
        case 'F': {
            /* the pure table decoder: it raises its own errors */
            PyObject *r = PyObject_CallFunction(dec_table, "Onn", buf, i,
                                                end);
            if (r == NULL) {
                /* the pure twin turns what the table decoder raised into
                 * its own error; KeyboardInterrupt and the like go up */
                if (!PyErr_ExceptionMatches(PyExc_Exception))
                    goto fail;
                PyErr_Clear();
                goto slow_props;
            }
            if (!PyTuple_Check(r) || PyTuple_Size(r) != 2) {
                Py_DECREF(r);
                PyErr_SetString(PyExc_TypeError,
                                "dec_table must return (value, offset)");
                goto fail;
            }
            value = PyTuple_GetItem(r, 0);
            Py_ssize_t next = PyLong_AsSsize_t(PyTuple_GetItem(r, 1));
            Py_XINCREF(value);
            Py_DECREF(r);
            if (next == -1 && PyErr_Occurred()) {
                Py_XDECREF(value);
                goto fail;
            }
            i = next;
            break;
        }
        default:    /* a flag no basic property has */
            goto slow_props;
        }
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
        Py_INCREF(name);
        Py_XDECREF(prop_names[bit]);
        prop_names[bit] = name;
        prop_formats[bit] = letter;
        Py_CLEAR(caches[bit].value);
    }
    Py_INCREF(table);
    Py_XDECREF(dec_table);
    dec_table = table;
    Py_INCREF(twin);
    Py_XDECREF(pure_twin);
    pure_twin = twin;
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "amqp._speedups",
    "Compiled twins of pure functions of amqp.serialization.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
