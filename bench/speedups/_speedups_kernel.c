/* The comparison kernel of bench/speedups/kernel.py, in C against the
 * stable (limited) API: parse a buffer of complete basic.deliver +
 * content header + body frames into delivery tuples.  Same algorithm,
 * same checks, same results (ValueError for anything malformed). */
#ifndef AMQP_FULL_API
#define Py_LIMITED_API 0x03090000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t u16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static uint32_t u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}
static uint64_t u64(const unsigned char *p) { return ((uint64_t)u32(p) << 32) | u32(p + 4); }

static int bad(const char *what)
{
    PyErr_SetString(PyExc_ValueError, what);
    return -1;
}

/* The frame at pos: its channel, payload start and end (the frame-end
 * octet's offset). */
static int frame(const unsigned char *b, Py_ssize_t n, Py_ssize_t pos, int want,
                 unsigned *channel, Py_ssize_t *start, Py_ssize_t *end)
{
    if (n - pos < 8)
        return bad("truncated frame");
    if (b[pos] != want) {
        PyErr_Format(PyExc_ValueError, "unexpected frame type %d", b[pos]);
        return -1;
    }
    uint32_t size = u32(b + pos + 3);
    if ((Py_ssize_t)size >= n - pos - 7)
        return bad("truncated frame");
    *start = pos + 7;
    *end = *start + size;
    if (b[*end] != 0xCE)
        return bad("bad frame end");
    *channel = u16(b + pos + 1);
    return 0;
}

/* The strings that repeat from message to message (consumer tag,
 * exchange, routing key, content type...): the last value seen in each
 * place is kept with its bytes and handed out again when they match. */
typedef struct {
    unsigned char len;
    char bytes[255];
    PyObject *value;
} StrCache;

static StrCache caches[16];

static PyObject *shortstr_cached(const unsigned char *b, Py_ssize_t *i,
                                 Py_ssize_t end, StrCache *cache)
{
    if (*i >= end) {
        bad("truncated shortstr");
        return NULL;
    }
    Py_ssize_t len = b[*i];
    if (*i + 1 + len > end) {
        bad("truncated shortstr");
        return NULL;
    }
    const char *at = (const char *)b + *i + 1;
    *i += 1 + len;
#ifdef AMQP_NO_CACHE
    cache = NULL;     /* (for the comparison with the plain algorithm) */
#endif
    if (cache != NULL && cache->value != NULL && cache->len == len &&
        memcmp(cache->bytes, at, (size_t)len) == 0) {
        Py_INCREF(cache->value);
        return cache->value;
    }
    PyObject *s = PyUnicode_DecodeUTF8(at, len, NULL);
    if (s != NULL && cache != NULL) {
        Py_XDECREF(cache->value);
        Py_INCREF(s);
        cache->value = s;
        cache->len = (unsigned char)len;
        memcpy(cache->bytes, at, (size_t)len);
    }
    return s;
}


static const char IS_SHORTSTR[16] = {
    0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1,
};

/* property names, interned once */
static PyObject *keys[16];

static int set_item(PyObject *d, int bit, PyObject *value)
{
    if (value == NULL)
        return -1;
    int r = PyDict_SetItem(d, keys[bit], value);
    Py_DECREF(value);
    return r;
}

static PyObject *properties(const unsigned char *b, Py_ssize_t i, Py_ssize_t end,
                            unsigned flags)
{
    PyObject *props = PyDict_New();
    if (props == NULL)
        return NULL;
    for (int bit = 15; bit > 1 && flags; bit--) {
        if (!(flags & (1u << bit)))
            continue;
        if (IS_SHORTSTR[bit]) {
            /* message ids and the like change each time: not cached */
            StrCache *cache = (bit == 15 || bit == 14 || bit == 9 ||
                               bit == 5 || bit == 4 || bit == 3) ?
                &caches[bit] : NULL;
            if (set_item(props, bit, shortstr_cached(b, &i, end, cache)) < 0)
                goto fail;
        } else if (bit == 13) {
            bad("headers table: not in this kernel");
            goto fail;
        } else if (bit == 12 || bit == 11) {
            if (i >= end) {
                bad("truncated properties");
                goto fail;
            }
            if (set_item(props, bit, PyLong_FromLong(b[i])) < 0)
                goto fail;
            i += 1;
        } else {
            if (end - i < 8) {
                bad("truncated properties");
                goto fail;
            }
            if (set_item(props, bit,
                         PyLong_FromUnsignedLongLong(u64(b + i))) < 0)
                goto fail;
            i += 8;
        }
    }
    return props;
fail:
    Py_DECREF(props);
    return NULL;
}

static PyObject *parse_deliveries(PyObject *self, PyObject *arg)
{
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(arg, &data, &n) < 0)
        return NULL;
    const unsigned char *b = (const unsigned char *)data;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    while (pos < n) {
        unsigned channel, ch2;
        Py_ssize_t i, end;
        PyObject *ctag = NULL, *exchange = NULL, *rkey = NULL, *props = NULL,
                 *body = NULL, *item = NULL;
        if (frame(b, n, pos, 1, &channel, &i, &end) < 0)
            goto fail;
        if (end - i < 4 || u32(b + i) != ((60u << 16) | 60u)) {
            bad("not basic.deliver");
            goto fail;
        }
        i += 4;
        if ((ctag = shortstr_cached(b, &i, end, &caches[0])) == NULL)
            goto fail_item;
        if (end - i < 9) {
            bad("truncated basic.deliver");
            goto fail_item;
        }
        uint64_t tag = u64(b + i);
        int redelivered = b[i + 8] & 1;
        i += 9;
        if ((exchange = shortstr_cached(b, &i, end, &caches[1])) == NULL ||
            (rkey = shortstr_cached(b, &i, end, &caches[2])) == NULL)
            goto fail_item;
        pos = end + 1;
        if (frame(b, n, pos, 2, &ch2, &i, &end) < 0)
            goto fail_item;
        if (ch2 != channel || end - i < 14) {
            bad("bad content header");
            goto fail_item;
        }
        uint64_t body_size = u64(b + i + 4);
        unsigned flags = u16(b + i + 12);
        if ((props = properties(b, i + 14, end, flags)) == NULL)
            goto fail_item;
        pos = end + 1;
        if (body_size > (uint64_t)(n - pos)) {
            bad("bad body frame");
            goto fail_item;
        }
        /* one frame: a slice; several: the payloads joined */
        Py_ssize_t first_start, first_end;
        if (body_size == 0) {
            body = PyBytes_FromStringAndSize(NULL, 0);
        } else {
            if (frame(b, n, pos, 3, &ch2, &first_start, &first_end) < 0)
                goto fail_item;
            if (ch2 != channel ||
                (uint64_t)(first_end - first_start) > body_size) {
                bad("bad body frame");
                goto fail_item;
            }
            if ((uint64_t)(first_end - first_start) == body_size) {
                body = PyBytes_FromStringAndSize(data + first_start,
                                                 first_end - first_start);
                pos = first_end + 1;
            } else {
                body = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)body_size);
                if (body == NULL)
                    goto fail_item;
                char *dst = PyBytes_AsString(body);
                uint64_t got = 0;
                while (got < body_size) {
                    if (frame(b, n, pos, 3, &ch2, &i, &end) < 0)
                        goto fail_item;
                    if (ch2 != channel ||
                        got + (uint64_t)(end - i) > body_size) {
                        bad("bad body frame");
                        goto fail_item;
                    }
                    memcpy(dst + got, b + i, (size_t)(end - i));
                    got += (uint64_t)(end - i);
                    pos = end + 1;
                }
            }
        }
        if (body == NULL)
            goto fail_item;
        item = Py_BuildValue("(INKNNNNN)", channel, ctag,
                             (unsigned long long)tag,
                             PyBool_FromLong(redelivered), exchange, rkey,
                             props, body);
        /* N steals even on failure */
        ctag = exchange = rkey = props = body = NULL;
        if (item == NULL)
            goto fail;
        if (PyList_Append(out, item) < 0) {
            Py_DECREF(item);
            goto fail;
        }
        Py_DECREF(item);
        continue;
fail_item:
        Py_XDECREF(ctag);
        Py_XDECREF(exchange);
        Py_XDECREF(rkey);
        Py_XDECREF(props);
        Py_XDECREF(body);
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse_deliveries", parse_deliveries, METH_O,
     "Parse complete basic.deliver contents into delivery tuples."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups_kernel", NULL, -1, methods,
    NULL, NULL, NULL, NULL,
};

static const char *const KEY_NAMES[16] = {
    NULL, NULL, "cluster_id", "app_id", "user_id", "type", "timestamp",
    "message_id", "expiration", "reply_to", "correlation_id", "priority",
    "delivery_mode", "headers", "content_encoding", "content_type",
};

PyMODINIT_FUNC PyInit__speedups_kernel(void)
{
    for (int bit = 2; bit < 16; bit++) {
        if (keys[bit] == NULL &&
            (keys[bit] = PyUnicode_InternFromString(KEY_NAMES[bit])) == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
