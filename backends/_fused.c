/* Fused in-place Adam / AdamW and SGD updates for the NumPy backend.
 *
 * tinynet's optimizers are written once as pure array-API functions
 * (tinynet/optimizers.py, Adam._leaf).  On NumPy, even done in place
 * (backends/_numpy_kernels.py) that is twelve elementwise passes over every
 * parameter; this loop does the same twelve operations, in the same order
 * and the same precision, in one pass.  The results are therefore equal bit
 * for bit to Adam._leaf (tests/test_optimizers.py checks it), provided the
 * compiler does not contract a*b+c into a fused multiply-add: setup.py builds
 * this file with -ffp-contract=off (and -fno-math-errno, so sqrt is the
 * correctly rounded instruction, as NumPy's np.sqrt).  The one difference:
 * subnormal values are flushed to zero, as on JAX (see FLUSH_BEGIN).
 *
 * Python API (the module is optional: _numpy_kernels falls back to NumPy):
 *
 *     adam(p, g, m, v, alpha_neg, keep, c1, c2, eps) -> None
 *     sgd(p, g, velocity, neg_lr, momentum, nesterov) -> None
 *
 * p, m, v, velocity: writable C-contiguous float32 or float64 buffers of one
 * length, g: a readable one of the same dtype and length; none may overlap.
 * The scalars are Python floats, rounded to the buffers' dtype as NumPy
 * rounds a Python float in ``float32_array * 0.1``; keep is None (Adam) or
 * the AdamW factor 1 - lr * weight_decay; velocity is None for plain SGD.
 * Per element, in Adam._leaf's and SGD._leaf's order:
 *
 *     adam:  m = m + (g - m) * c1
 *            v = v + (g * g - v) * c2
 *            p = p [* keep] + (m * alpha_neg) / (sqrt(v) + eps)
 *     sgd:   s = g * neg_lr
 *            p = s + p                          (velocity None)
 *            v = v * momentum + s;  p = p + v   (nesterov False)
 *            v = v * momentum + s;  p = (v * momentum + s) + p
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#if defined(_MSC_VER)
#define RESTRICT __restrict
#else
#define RESTRICT restrict
#endif

/* Subnormal numbers (below 1.2e-38 in float32) are flushed to zero while a
 * loop runs (x86 MXCSR flush-to-zero and denormals-are-zero, restored after),
 * as XLA does for every JAX computation on the CPU.  Adam's and momentum's
 * slots decay geometrically where a gradient stays near zero (an input
 * pixel that is rarely on), reach the subnormal range after ~800 steps, and
 * each operation on a subnormal then costs ~100 cycles: the M Adam update
 * went from 0.15 to 1.6 ms per step.  A flushed value is one that would have
 * moved its parameter by less than 1e-34.  Elsewhere (no SSE control word)
 * nothing is flushed. */
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define FLUSH_BEGIN unsigned int saved_csr = _mm_getcsr(); _mm_setcsr(saved_csr | 0x8040);
#define FLUSH_END _mm_setcsr(saved_csr);
#else
#define FLUSH_BEGIN
#define FLUSH_END
#endif

/* One binary, the widest vector unit the CPU has (GCC on x86-64); the
 * operations are IEEE-exact in every variant, so the bits do not depend on it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* keep is 1 for Adam: p * 1 is p, bit for bit, so one loop serves AdamW too. */
#define ADAM_LOOP(T, SQRT)                                                          \
    CLONES static void adam_##T(T *RESTRICT p, const T *RESTRICT g, T *RESTRICT m,   \
                                T *RESTRICT v, Py_ssize_t n, T alpha_neg, T keep,     \
                                T c1, T c2, T eps)                                    \
    {                                                                                 \
        for (Py_ssize_t i = 0; i < n; i++) {                                          \
            T gi = g[i];                                                              \
            T mi = m[i] + (gi - m[i]) * c1;                                           \
            T vi = v[i] + (gi * gi - v[i]) * c2;                                      \
            m[i] = mi;                                                                \
            v[i] = vi;                                                                \
            p[i] = p[i] * keep + (mi * alpha_neg) / (SQRT(vi) + eps);                 \
        }                                                                             \
    }

ADAM_LOOP(float, sqrtf)
ADAM_LOOP(double, sqrt)

#define SGD_LOOP(T)                                                                    \
    CLONES static void sgd_##T(T *RESTRICT p, const T *RESTRICT g, T *RESTRICT v,      \
                               Py_ssize_t n, T neg_lr, T mu, int nesterov)             \
    {                                                                                 \
        if (v == NULL) {                                                              \
            for (Py_ssize_t i = 0; i < n; i++)                                        \
                p[i] = g[i] * neg_lr + p[i];                                          \
        } else if (nesterov) {                                                        \
            for (Py_ssize_t i = 0; i < n; i++) {                                      \
                T step = g[i] * neg_lr;                                               \
                T vi = v[i] * mu + step;                                              \
                v[i] = vi;                                                            \
                p[i] = (vi * mu + step) + p[i];                                       \
            }                                                                         \
        } else {                                                                      \
            for (Py_ssize_t i = 0; i < n; i++) {                                      \
                T vi = v[i] * mu + g[i] * neg_lr;                                     \
                v[i] = vi;                                                            \
                p[i] = p[i] + vi;                                                     \
            }                                                                         \
        }                                                                             \
    }

SGD_LOOP(float)
SGD_LOOP(double)

static int
overlap(const Py_buffer *a, const Py_buffer *b)
{
    const char *a0 = a->buf, *b0 = b->buf;
    return a->len > 0 && b->len > 0 && a0 < b0 + b->len && b0 < a0 + a->len;
}

/* Acquires objs[0..count) as C-contiguous buffers (all writable but the one
 * named "g"), checks they are float32 or float64 of one format and length
 * and do not overlap; returns 'f' or 'd', or 0 with an exception set.  The
 * caller releases bufs[0..*got). */
static char
get_buffers(const char *fn, PyObject **objs, const char *const *names, int count,
            Py_buffer *bufs, int *got)
{
    for (*got = 0; *got < count; (*got)++) {
        int i = *got, readonly = strcmp(names[i], "g") == 0;
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (readonly ? 0 : PyBUF_WRITABLE);
        if (PyObject_GetBuffer(objs[i], &bufs[i], flags) < 0) {
            PyErr_Format(PyExc_TypeError, "_fused.%s: %s must be a %sC-contiguous float32 or "
                         "float64 array", fn, names[i], readonly ? "" : "writable ");
            return 0;
        }
    }
    const char *fmt = bufs[0].format;
    char kind = (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') ? fmt[1] : fmt[0];
    Py_ssize_t size = bufs[0].itemsize;
    if (!((kind == 'f' && size == 4) || (kind == 'd' && size == 8))) {
        PyErr_Format(PyExc_TypeError, "_fused.%s: p has format '%s'; expected float32 or "
                     "float64", fn, fmt);
        return 0;
    }
    for (int i = 1; i < count; i++) {
        if (strcmp(bufs[i].format, fmt) != 0 || bufs[i].len != bufs[0].len) {
            PyErr_Format(PyExc_ValueError, "_fused.%s: %s (format '%s', %zd bytes) does not "
                         "match p (format '%s', %zd bytes)", fn, names[i], bufs[i].format,
                         bufs[i].len, fmt, bufs[0].len);
            return 0;
        }
        for (int j = 0; j < i; j++) {
            if (overlap(&bufs[i], &bufs[j])) {
                PyErr_Format(PyExc_ValueError, "_fused.%s: %s and %s share memory", fn,
                             names[j], names[i]);
                return 0;
            }
        }
    }
    return kind;
}

/* Releases bufs[0..got); None if the loop ran (kind set), else NULL (the
 * exception get_buffers set). */
static PyObject *
release(Py_buffer *bufs, int got, char kind)
{
    while (got-- > 0)
        PyBuffer_Release(&bufs[got]);
    return kind ? Py_NewRef(Py_None) : NULL;
}

static PyObject *
fused_adam(PyObject *self, PyObject *args)
{
    static const char *const names[4] = {"p", "g", "m", "v"};
    PyObject *objs[4], *keep_obj;
    double alpha_neg, c1, c2, eps, keep = 1.0;
    if (!PyArg_ParseTuple(args, "OOOOdOddd:adam", &objs[0], &objs[1], &objs[2], &objs[3],
                          &alpha_neg, &keep_obj, &c1, &c2, &eps))
        return NULL;
    if (keep_obj != Py_None) {
        keep = PyFloat_AsDouble(keep_obj);
        if (keep == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer bufs[4];
    int got = 0;
    char kind = get_buffers("adam", objs, names, 4, bufs, &got);
    if (kind) {
        Py_ssize_t n = bufs[0].len / bufs[0].itemsize;
        Py_BEGIN_ALLOW_THREADS
        FLUSH_BEGIN
        if (kind == 'f')
            adam_float(bufs[0].buf, bufs[1].buf, bufs[2].buf, bufs[3].buf, n, (float)alpha_neg,
                       (float)keep, (float)c1, (float)c2, (float)eps);
        else
            adam_double(bufs[0].buf, bufs[1].buf, bufs[2].buf, bufs[3].buf, n, alpha_neg, keep,
                        c1, c2, eps);
        FLUSH_END
        Py_END_ALLOW_THREADS
    }
    return release(bufs, got, kind);
}

static PyObject *
fused_sgd(PyObject *self, PyObject *args)
{
    static const char *const names[3] = {"p", "g", "velocity"};
    PyObject *objs[3];
    double neg_lr, mu;
    int nesterov;
    if (!PyArg_ParseTuple(args, "OOOddp:sgd", &objs[0], &objs[1], &objs[2], &neg_lr, &mu,
                          &nesterov))
        return NULL;
    int count = objs[2] == Py_None ? 2 : 3;
    Py_buffer bufs[3];
    int got = 0;
    char kind = get_buffers("sgd", objs, names, count, bufs, &got);
    if (kind) {
        Py_ssize_t n = bufs[0].len / bufs[0].itemsize;
        void *v = count == 3 ? bufs[2].buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        FLUSH_BEGIN
        if (kind == 'f')
            sgd_float(bufs[0].buf, bufs[1].buf, v, n, (float)neg_lr, (float)mu, nesterov);
        else
            sgd_double(bufs[0].buf, bufs[1].buf, v, n, neg_lr, mu, nesterov);
        FLUSH_END
        Py_END_ALLOW_THREADS
    }
    return release(bufs, got, kind);
}

static PyMethodDef methods[] = {
    {"adam", fused_adam, METH_VARARGS,
     "adam(p, g, m, v, alpha_neg, keep, c1, c2, eps): Adam._leaf in place, one pass."},
    {"sgd", fused_sgd, METH_VARARGS,
     "sgd(p, g, velocity, neg_lr, momentum, nesterov): SGD._leaf in place, one pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "Fused in-place optimizer loops (see _fused.c).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__fused(void)
{
    return PyModule_Create(&module);
}
