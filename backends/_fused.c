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
 *     adam_list / sgd_list: the same over lists of parameters (see below)
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
#include <stdint.h>
#include <stdlib.h>
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

/* 'f' or 'd' for a float32/float64 buffer, else 0. */
static char
float_kind(const Py_buffer *b)
{
    const char *fmt = b->format;
    char kind = (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') ? fmt[1] : fmt[0];
    if (kind == 'f' && b->itemsize == 4 && fmt[fmt[0] == kind ? 1 : 2] == '\0')
        return 'f';
    if (kind == 'd' && b->itemsize == 8 && fmt[fmt[0] == kind ? 1 : 2] == '\0')
        return 'd';
    return 0;
}

/* The buffers only read (inputs may share memory with each other, not with
 * an output). */
static int
is_input(const char *name)
{
    return strcmp(name, "g") == 0 || strcmp(name, "dy") == 0 || strcmp(name, "x") == 0;
}

/* Acquires objs[0..count) as C-contiguous buffers (all writable but the one
 * named "g", "dy" or "x"), checks they are float32 or float64 of one format and length
 * and do not overlap; returns 'f' or 'd', or 0 with an exception set.  The
 * caller releases bufs[0..*got). */
static char
get_buffers(const char *fn, PyObject **objs, const char *const *names, int count,
            Py_buffer *bufs, int *got)
{
    for (*got = 0; *got < count; (*got)++) {
        int i = *got, readonly = is_input(names[i]);
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (readonly ? 0 : PyBUF_WRITABLE);
        if (PyObject_GetBuffer(objs[i], &bufs[i], flags) < 0) {
            PyErr_Format(PyExc_TypeError, "_fused.%s: %s must be a %sC-contiguous float32 or "
                         "float64 array", fn, names[i], readonly ? "" : "writable ");
            return 0;
        }
    }
    const char *fmt = bufs[0].format;
    char kind = float_kind(&bufs[0]);
    if (!kind) {
        PyErr_Format(PyExc_TypeError, "_fused.%s: %s has format '%s'; expected float32 or "
                     "float64", fn, names[0], fmt);
        return 0;
    }
    for (int i = 1; i < count; i++) {
        if (strcmp(bufs[i].format, fmt) != 0 || bufs[i].len != bufs[0].len) {
            PyErr_Format(PyExc_ValueError, "_fused.%s: %s (format '%s', %zd bytes) does not "
                         "match %s (format '%s', %zd bytes)", fn, names[i], bufs[i].format,
                         bufs[i].len, names[0], fmt, bufs[0].len);
            return 0;
        }
        for (int j = 0; j < i; j++) {
            if (!(is_input(names[i]) && is_input(names[j])) && overlap(&bufs[i], &bufs[j])) {
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

/* keep: None (Adam: 1) or a float (AdamW's 1 - lr * weight_decay); 0 with
 * an exception set if it is neither. */
static int
parse_keep(PyObject *keep_obj, double *keep)
{
    if (keep_obj == Py_None)
        return 1;
    *keep = PyFloat_AsDouble(keep_obj);
    return !(*keep == -1.0 && PyErr_Occurred());
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
    if (!parse_keep(keep_obj, &keep))
        return NULL;
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

/* ------------------------------------------------------------------------
 * Reductions over one axis of a 2-D array (for the NumPy backend's xp,
 * backends/_numpy_xp.py), the ReLU gradient and one-hot targets (layers and
 * losses ask for them with backends.fused).  NumPy's ufunc reductions
 * cost 5-14 us on the (300, 3) and (300, 64) arrays of a small model's step
 * (per-call and per-row overhead), several times the arithmetic.  These
 * give NumPy's bits: the same additions in the same order (tested against
 * np.add.reduce for many shapes), the same maximum.  No subnormal flushing
 * here: NumPy does not flush either.
 *
 *     colsum(a, out)   out[j] = sum over i of a[i, j], rows added in order
 *                      (what np.add.reduce(a, axis=0) does)
 *     rowsum(a, out)   out[i] = NumPy's pairwise sum of row i
 *     rowmax(a, out)   out[i] = np.maximum.reduce(a[i]) (NaN propagates)
 *     relu_grad(dy, x, out)   out = dy * (x > 0 ? 1 : 0), elementwise
 *     one_hot(labels, out)    out[i, j] = (labels[i] == j)   (see below)
 *     threefry_words(k0, k1, w0, w1)   tinynet.random's draws (see below)
 *
 * a, dy, x: C-contiguous float32/float64 (a 2-D); out: a writable
 * C-contiguous one of the same dtype and the result's size.
 * ---------------------------------------------------------------------- */

#define COLSUM_LOOP(T)                                                                 \
    CLONES static void colsum_##T(const T *RESTRICT a, T *RESTRICT out, Py_ssize_t rows, \
                                  Py_ssize_t cols)                                     \
    {                                                                                 \
        for (Py_ssize_t j = 0; j < cols; j++)                                         \
            out[j] = (T)0 + a[j]; /* NumPy starts from 0: -0.0 + -0.0 sums to 0.0 */  \
        for (Py_ssize_t i = 1; i < rows; i++) {                                       \
            const T *row = a + i * cols;                                              \
            for (Py_ssize_t j = 0; j < cols; j++)                                     \
                out[j] = out[j] + row[j];                                             \
        }                                                                             \
    }

COLSUM_LOOP(float)
COLSUM_LOOP(double)

/* NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src):
 * fewer than 8 terms in order from -0.0, up to PW_BLOCKSIZE with eight
 * running sums combined as a tree, longer runs split in two. */
#define PW_BLOCKSIZE 128
#define PAIRWISE(T)                                                                    \
    static T pairwise_##T(const T *a, Py_ssize_t n)                                   \
    {                                                                                 \
        if (n < 8) {                                                                  \
            T res = -0.0;                                                             \
            for (Py_ssize_t i = 0; i < n; i++)                                        \
                res += a[i];                                                          \
            return res;                                                               \
        }                                                                             \
        if (n <= PW_BLOCKSIZE) {                                                      \
            T r[8];                                                                   \
            Py_ssize_t i;                                                             \
            for (int k = 0; k < 8; k++)                                               \
                r[k] = a[k];                                                          \
            for (i = 8; i < n - (n % 8); i += 8)                                      \
                for (int k = 0; k < 8; k++)                                           \
                    r[k] += a[i + k];                                                 \
            T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
            for (; i < n; i++)                                                        \
                res += a[i];                                                          \
            return res;                                                               \
        }                                                                             \
        Py_ssize_t n2 = n / 2;                                                        \
        n2 -= n2 % 8;                                                                 \
        return pairwise_##T(a, n2) + pairwise_##T(a + n2, n - n2);                    \
    }                                                                                 \
    static void rowsum_##T(const T *a, T *out, Py_ssize_t rows, Py_ssize_t cols)      \
    {                                                                                 \
        for (Py_ssize_t i = 0; i < rows; i++)                                         \
            out[i] = (T)0 + pairwise_##T(a + i * cols, cols);                         \
    }

PAIRWISE(float)
PAIRWISE(double)

/* NumPy's maximum: the running value is kept if it is greater than the next
 * one or NaN; on a tie (0.0 and -0.0) the later one is taken. */
#define ROWMAX_LOOP(T)                                                                 \
    static void rowmax_##T(const T *a, T *out, Py_ssize_t rows, Py_ssize_t cols)      \
    {                                                                                 \
        for (Py_ssize_t i = 0; i < rows; i++) {                                       \
            const T *row = a + i * cols;                                              \
            T m = row[0];                                                             \
            for (Py_ssize_t j = 1; j < cols; j++) {                                   \
                T b = row[j];                                                         \
                m = (m > b || m != m) ? m : b;                                       \
            }                                                                         \
            out[i] = m;                                                               \
        }                                                                             \
    }

ROWMAX_LOOP(float)
ROWMAX_LOOP(double)

#define RELU_GRAD_LOOP(T)                                                              \
    CLONES static void relu_grad_##T(const T *RESTRICT dy, const T *RESTRICT x,        \
                                     T *RESTRICT out, Py_ssize_t n)                    \
    {                                                                                 \
        for (Py_ssize_t i = 0; i < n; i++)                                            \
            out[i] = dy[i] * (x[i] > 0 ? (T)1 : (T)0);                                \
    }

RELU_GRAD_LOOP(float)
RELU_GRAD_LOOP(double)

enum { COLSUM, ROWSUM, ROWMAX };

/* colsum/rowsum/rowmax(a, out): checks, then the loop. */
static PyObject *
reduce2d(PyObject *args, const char *fn, int which)
{
    PyObject *a_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OO", &a_obj, &out_obj))
        return NULL;
    Py_buffer a, out;
    if (PyObject_GetBuffer(a_obj, &a, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Format(PyExc_TypeError, "_fused.%s: a must be a C-contiguous float32 or "
                     "float64 array", fn);
        return NULL;
    }
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                              PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&a);
        PyErr_Format(PyExc_TypeError, "_fused.%s: out must be a writable C-contiguous "
                     "float32 or float64 array", fn);
        return NULL;
    }
    PyObject *result = NULL;
    char kind = float_kind(&a);
    Py_ssize_t rows = a.ndim == 2 ? a.shape[0] : 0, cols = a.ndim == 2 ? a.shape[1] : 0;
    Py_ssize_t want = which == COLSUM ? cols : rows;
    if (!kind || a.ndim != 2 || rows < 1 || cols < 1) {
        PyErr_Format(PyExc_ValueError, "_fused.%s: a must be a non-empty 2-D float32 or "
                     "float64 array (received %d-D, format '%s')", fn, a.ndim, a.format);
    } else if (float_kind(&out) != kind || out.len != want * a.itemsize) {
        PyErr_Format(PyExc_ValueError, "_fused.%s: out must hold %zd values of a's dtype "
                     "(format '%s'); received %zd bytes of format '%s'", fn, want, a.format,
                     out.len, out.format);
    } else if (overlap(&a, &out)) {
        PyErr_Format(PyExc_ValueError, "_fused.%s: a and out share memory", fn);
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f') {
            if (which == COLSUM) colsum_float(a.buf, out.buf, rows, cols);
            else if (which == ROWSUM) rowsum_float(a.buf, out.buf, rows, cols);
            else rowmax_float(a.buf, out.buf, rows, cols);
        } else {
            if (which == COLSUM) colsum_double(a.buf, out.buf, rows, cols);
            else if (which == ROWSUM) rowsum_double(a.buf, out.buf, rows, cols);
            else rowmax_double(a.buf, out.buf, rows, cols);
        }
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&a);
    return result;
}

static PyObject *
fused_colsum(PyObject *self, PyObject *args)
{
    return reduce2d(args, "colsum", COLSUM);
}

static PyObject *
fused_rowsum(PyObject *self, PyObject *args)
{
    return reduce2d(args, "rowsum", ROWSUM);
}

static PyObject *
fused_rowmax(PyObject *self, PyObject *args)
{
    return reduce2d(args, "rowmax", ROWMAX);
}

static PyObject *
fused_relu_grad(PyObject *self, PyObject *args)
{
    static const char *const names[3] = {"out", "dy", "x"};
    PyObject *objs[3];
    if (!PyArg_ParseTuple(args, "OOO:relu_grad", &objs[1], &objs[2], &objs[0]))
        return NULL;
    Py_buffer bufs[3];
    int got = 0;
    char kind = get_buffers("relu_grad", objs, names, 3, bufs, &got);
    if (kind) {
        Py_ssize_t n = bufs[0].len / bufs[0].itemsize;
        Py_BEGIN_ALLOW_THREADS
        if (kind == 'f')
            relu_grad_float(bufs[1].buf, bufs[2].buf, bufs[0].buf, n);
        else
            relu_grad_double(bufs[1].buf, bufs[2].buf, bufs[0].buf, n);
        Py_END_ALLOW_THREADS
    }
    return release(bufs, got, kind);
}

/* one_hot(labels, out): out[i, j] = 1 where labels[i] == j, else 0 (labels
 * outside 0..k-1 give a row of zeros), what the array-API expression
 * astype(labels[:, None] == arange(k), dtype) gives.  labels: a 1-D
 * C-contiguous integer buffer; out: a writable C-contiguous (n, k) float32
 * or float64 one. */
/* The struct code ('b', 'h', 'i', 'l', 'q' or unsigned 'B'...'Q') of a
 * buffer of native-order integers of the C type's size, else 0. */
static char
integer_code(const Py_buffer *b)
{
    const char *fmt = b->format;
    char code = (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@') ? fmt[1] : fmt[0];
    Py_ssize_t native = 0; /* the C type's size; the buffer's items must have it */
    switch (code) {
    case 'b': case 'B': native = sizeof(char); break;
    case 'h': case 'H': native = sizeof(short); break;
    case 'i': case 'I': native = sizeof(int); break;
    case 'l': case 'L': native = sizeof(long); break;
    case 'q': case 'Q': native = sizeof(long long); break;
    }
    int ok = native != 0 && native == b->itemsize && fmt[(fmt[0] == code) ? 1 : 2] == '\0';
    return ok ? code : 0;
}

/* Acquire objs[0] and objs[1] as two separate 1-D C-contiguous arrays of
 * one length of native unsigned integers of `size` bytes (the uint32 words
 * of threefry_words, the uint64 values of sort_u64); objs[1] must be
 * writable, objs[0] too if `both_writable`.  Returns how many buffers it
 * holds (release them) and sets *ok; on failure a Python error names
 * fn, the argument and the problem. */
static int
get_unsigned_pair(const char *fn, PyObject *const objs[2], const char *const names[2],
                  Py_ssize_t size, int both_writable, Py_buffer w[2], int *ok)
{
    const char *type = size == 4 ? "uint32" : "uint64";
    int got = 0;
    *ok = 1;
    for (; got < 2; got++) {
        int writable = got == 1 || both_writable;
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[got], &w[got], flags) < 0) {
            PyErr_Format(PyExc_TypeError, "_fused.%s: %s must be a %sC-contiguous %s array",
                         fn, names[got], writable ? "writable " : "", type);
            *ok = 0;
            return got;
        }
        char code = integer_code(&w[got]);
        if (!(code >= 'A' && code <= 'Z' && w[got].itemsize == size && w[got].ndim == 1)) {
            PyErr_Format(PyExc_TypeError, "_fused.%s: %s has format '%s' and %d dimensions; "
                         "expected a 1-D %s array", fn, names[got], w[got].format,
                         w[got].ndim, type);
            *ok = 0;
            return got + 1;
        }
    }
    if (w[0].len != w[1].len || overlap(&w[0], &w[1])) {
        PyErr_Format(PyExc_ValueError, "_fused.%s: %s and %s must be two separate arrays of "
                     "one length", fn, names[0], names[1]);
        *ok = 0;
    }
    return got;
}

/* labels[i] as a row index, or -1 where it is outside 0..k-1. */
static Py_ssize_t
label_index(const char *labels, char code, Py_ssize_t i, Py_ssize_t k)
{
    long long s;
    unsigned long long u;
    switch (code) {
    case 'b': s = ((const signed char *)labels)[i]; goto sign;
    case 'h': s = ((const short *)labels)[i]; goto sign;
    case 'i': s = ((const int *)labels)[i]; goto sign;
    case 'l': s = ((const long *)labels)[i]; goto sign;
    case 'q': s = ((const long long *)labels)[i]; goto sign;
    case 'B': u = ((const unsigned char *)labels)[i]; break;
    case 'H': u = ((const unsigned short *)labels)[i]; break;
    case 'I': u = ((const unsigned int *)labels)[i]; break;
    case 'L': u = ((const unsigned long *)labels)[i]; break;
    default: u = ((const unsigned long long *)labels)[i]; break;
    }
    return u < (unsigned long long)k ? (Py_ssize_t)u : -1;
sign:
    return (s >= 0 && s < k) ? (Py_ssize_t)s : -1;
}

/* Acquires labels_obj as a C-contiguous 1-D buffer of native integers
 * (length n unless n < 0) and returns its struct code, or 0 with an
 * exception set and nothing held. */
static char
get_labels(const char *fn, PyObject *labels_obj, Py_ssize_t n, Py_buffer *labels)
{
    if (PyObject_GetBuffer(labels_obj, labels, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Format(PyExc_TypeError, "_fused.%s: labels must be a C-contiguous integer "
                     "array", fn);
        return 0;
    }
    char code = integer_code(labels);
    if (!code || labels->ndim != 1 || (n >= 0 && labels->shape[0] != n)) {
        if (n >= 0)
            PyErr_Format(PyExc_ValueError, "_fused.%s: labels must be a 1-D integer array of "
                         "length %zd (received %d-D, format '%s')", fn, n, labels->ndim,
                         labels->format);
        else
            PyErr_Format(PyExc_ValueError, "_fused.%s: labels must be a 1-D integer array "
                         "(received %d-D, format '%s')", fn, labels->ndim, labels->format);
        PyBuffer_Release(labels);
        return 0;
    }
    return code;
}

#define ONE_HOT_LOOP(T)                                                                \
    static void one_hot_##T(const char *labels, char code, Py_ssize_t n, T *out,       \
                            Py_ssize_t k)                                             \
    {                                                                                 \
        memset(out, 0, (size_t)n * (size_t)k * sizeof(T));                            \
        for (Py_ssize_t i = 0; i < n; i++) {                                          \
            Py_ssize_t j = label_index(labels, code, i, k);                           \
            if (j >= 0)                                                               \
                out[i * k + j] = (T)1;                                                \
        }                                                                             \
    }

ONE_HOT_LOOP(float)
ONE_HOT_LOOP(double)

static PyObject *
fused_one_hot(PyObject *self, PyObject *args)
{
    PyObject *labels_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OO:one_hot", &labels_obj, &out_obj))
        return NULL;
    Py_buffer labels, out;
    char code = get_labels("one_hot", labels_obj, -1, &labels);
    if (!code)
        return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                              PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&labels);
        PyErr_SetString(PyExc_TypeError, "_fused.one_hot: out must be a writable "
                        "C-contiguous float32 or float64 array");
        return NULL;
    }
    PyObject *result = NULL;
    char kind = float_kind(&out);
    if (!kind || out.ndim != 2 || out.shape[0] != labels.shape[0]) {
        PyErr_Format(PyExc_ValueError, "_fused.one_hot: out must be a float32 or float64 "
                     "array of shape (%zd, classes) (received %d-D, format '%s')",
                     labels.shape[0], out.ndim, out.format);
    } else if (overlap(&labels, &out)) {
        PyErr_SetString(PyExc_ValueError, "_fused.one_hot: labels and out share memory");
    } else {
        Py_ssize_t n = out.shape[0], k = out.shape[1];
        if (kind == 'f')
            one_hot_float(labels.buf, code, n, out.buf, k);
        else
            one_hot_double(labels.buf, code, n, out.buf, k);
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&labels);
    return result;
}

/* argmax_hits(scores, labels) -> int: how many rows i of the (n, k) float
 * array scores have np.argmax(scores[i]) == labels[i] (the sparse accuracy's
 * count).  NumPy's argmax: the first maximum, or the first NaN if the row has
 * one.  labels: a C-contiguous 1-D integer array of length n; a label outside
 * 0..k-1 is never a hit.  One call instead of four NumPy ones (argmax, ==,
 * astype, sum), each of which costs ~3 us cold inside a training step. */
#define ARGMAX_LOOP(T)                                                                 \
    static Py_ssize_t argmax_##T(const T *row, Py_ssize_t k)                          \
    {                                                                                 \
        Py_ssize_t best = 0;                                                          \
        T top = row[0];                                                               \
        if (top != top)                                                               \
            return 0;                                                                 \
        for (Py_ssize_t j = 1; j < k; j++) {                                          \
            T v = row[j];                                                             \
            if (v != v)                                                               \
                return j;                                                             \
            if (v > top) {                                                            \
                top = v;                                                              \
                best = j;                                                             \
            }                                                                         \
        }                                                                             \
        return best;                                                                  \
    }

ARGMAX_LOOP(float)
ARGMAX_LOOP(double)

static PyObject *
fused_argmax_hits(PyObject *self, PyObject *args)
{
    PyObject *scores_obj, *labels_obj;
    if (!PyArg_ParseTuple(args, "OO:argmax_hits", &scores_obj, &labels_obj))
        return NULL;
    Py_buffer scores, labels;
    if (PyObject_GetBuffer(scores_obj, &scores, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_SetString(PyExc_TypeError, "_fused.argmax_hits: scores must be a C-contiguous "
                        "float32 or float64 array");
        return NULL;
    }
    char kind = float_kind(&scores);
    if (!kind || scores.ndim != 2 || scores.shape[1] < 1) {
        PyErr_Format(PyExc_ValueError, "_fused.argmax_hits: scores must be a float32 or "
                     "float64 array of shape (n, k), k >= 1 (received %d-D, format '%s')",
                     scores.ndim, scores.format);
        PyBuffer_Release(&scores);
        return NULL;
    }
    char code = get_labels("argmax_hits", labels_obj, scores.shape[0], &labels);
    if (!code) {
        PyBuffer_Release(&scores);
        return NULL;
    }
    Py_ssize_t n = scores.shape[0], k = scores.shape[1], hits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t want = label_index(labels.buf, code, i, k);
        Py_ssize_t got = kind == 'f' ? argmax_float((const float *)scores.buf + i * k, k)
                                     : argmax_double((const double *)scores.buf + i * k, k);
        hits += got == want;
    }
    PyBuffer_Release(&labels);
    PyBuffer_Release(&scores);
    return PyLong_FromSsize_t(hits);
}

/* adam_list / sgd_list: adam / sgd over lists of parameters and gradients
 * whose slots are consecutive segments of one flat buffer per slot (the
 * small parameters of a model, see _numpy_kernels.adam_many): one call per
 * update instead of one per parameter.  Every buffer is checked before any
 * is written, so an error leaves all of them as they were (the caller then
 * falls back to one call per parameter). */
static PyObject *
update_list(PyObject *ps, PyObject *gs, PyObject *slot_objs[2], int n_slots, const char *fn,
            int adam, double scalars[5], int nesterov)
{
    if (!PyList_Check(ps) || !PyList_Check(gs) || PyList_GET_SIZE(ps) != PyList_GET_SIZE(gs)) {
        PyErr_Format(PyExc_TypeError, "_fused.%s: params and grads must be lists of one "
                     "length", fn);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(ps);
    Py_buffer slots[2], *bufs = PyMem_Calloc(count > 0 ? 2 * count : 1, sizeof(Py_buffer));
    if (bufs == NULL)
        return PyErr_NoMemory();
    int got_slots = 0, ok = 1;
    Py_ssize_t got = 0, total = 0;
    char kind = 0;
    static const char *const slot_names[2] = {"m", "v"};
    for (; got_slots < n_slots; got_slots++) {
        if (PyObject_GetBuffer(slot_objs[got_slots], &slots[got_slots],
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
            PyErr_Format(PyExc_TypeError, "_fused.%s: %s must be a writable C-contiguous "
                         "float32 or float64 array", fn, slot_names[got_slots]);
            ok = 0;
            break;
        }
    }
    for (Py_ssize_t i = 0; ok && i < count; i++) {
        static const char *const names[2] = {"p", "g"};
        PyObject *objs[2] = {PyList_GET_ITEM(ps, i), PyList_GET_ITEM(gs, i)};
        int pair_got = 0;
        char k = get_buffers(fn, objs, names, 2, &bufs[2 * i], &pair_got);
        got = 2 * i + pair_got;
        if (!k || (kind && k != kind)) {
            if (k)
                PyErr_Format(PyExc_ValueError, "_fused.%s: parameters of two dtypes", fn);
            ok = 0;
            break;
        }
        kind = k;
        total += bufs[2 * i].len / bufs[2 * i].itemsize;
    }
    for (int j = 0; ok && j < n_slots; j++) {
        if (float_kind(&slots[j]) != kind || slots[j].len != total * slots[j].itemsize) {
            PyErr_Format(PyExc_ValueError, "_fused.%s: %s must hold %zd values of the "
                         "parameters' dtype (received %zd bytes, format '%s')", fn,
                         slot_names[j], total, slots[j].len, slots[j].format);
            ok = 0;
        }
    }
    if (ok && kind) {
        Py_ssize_t offset = 0;
        Py_BEGIN_ALLOW_THREADS
        FLUSH_BEGIN
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_buffer *p = &bufs[2 * i], *g = &bufs[2 * i + 1];
            Py_ssize_t n = p->len / p->itemsize;
            if (kind == 'f') {
                float *s0 = n_slots > 0 ? (float *)slots[0].buf + offset : NULL;
                float *s1 = n_slots > 1 ? (float *)slots[1].buf + offset : NULL;
                if (adam)
                    adam_float(p->buf, g->buf, s0, s1, n, (float)scalars[0], (float)scalars[1],
                               (float)scalars[2], (float)scalars[3], (float)scalars[4]);
                else
                    sgd_float(p->buf, g->buf, s0, n, (float)scalars[0], (float)scalars[1],
                              nesterov);
            } else {
                double *s0 = n_slots > 0 ? (double *)slots[0].buf + offset : NULL;
                double *s1 = n_slots > 1 ? (double *)slots[1].buf + offset : NULL;
                if (adam)
                    adam_double(p->buf, g->buf, s0, s1, n, scalars[0], scalars[1], scalars[2],
                                scalars[3], scalars[4]);
                else
                    sgd_double(p->buf, g->buf, s0, n, scalars[0], scalars[1], nesterov);
            }
            offset += n;
        }
        FLUSH_END
        Py_END_ALLOW_THREADS
    }
    while (got-- > 0)
        PyBuffer_Release(&bufs[got]);
    while (got_slots-- > 0)
        PyBuffer_Release(&slots[got_slots]);
    PyMem_Free(bufs);
    return ok ? Py_NewRef(Py_None) : NULL;
}

static PyObject *
fused_adam_list(PyObject *self, PyObject *args)
{
    PyObject *ps, *gs, *slot_objs[2], *keep_obj;
    double scalars[5] = {0, 1.0, 0, 0, 0}; /* alpha_neg, keep, c1, c2, eps */
    if (!PyArg_ParseTuple(args, "OOOOdOddd:adam_list", &ps, &gs, &slot_objs[0], &slot_objs[1],
                          &scalars[0], &keep_obj, &scalars[2], &scalars[3], &scalars[4]))
        return NULL;
    if (!parse_keep(keep_obj, &scalars[1]))
        return NULL;
    return update_list(ps, gs, slot_objs, 2, "adam_list", 1, scalars, 0);
}

static PyObject *
fused_sgd_list(PyObject *self, PyObject *args)
{
    PyObject *ps, *gs, *slot_objs[2] = {NULL, NULL};
    double scalars[5] = {0, 0, 0, 0, 0}; /* neg_lr, momentum */
    int nesterov;
    if (!PyArg_ParseTuple(args, "OOOddp:sgd_list", &ps, &gs, &slot_objs[0], &scalars[0],
                          &scalars[1], &nesterov))
        return NULL;
    return update_list(ps, gs, slot_objs, slot_objs[0] == Py_None ? 0 : 1, "sgd_list", 0,
                       scalars, nesterov);
}

/* threefry_words(k0, k1, w0, w1): the Threefry-2x32-20 block function of key
 * (k0, k1) on counters (0, i), i < len(w0), its two output words written to
 * the uint32 buffers w0 and w1: tinynet.random._words (JAX's partitionable
 * counter layout), one pass instead of ~120 NumPy operations over the
 * arrays (90k counters: 2.2 ms in NumPy). */
static PyObject *
fused_threefry_words(PyObject *self, PyObject *args)
{
    unsigned long k0_in, k1_in;
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "kkOO:threefry_words", &k0_in, &k1_in, &objs[0], &objs[1]))
        return NULL;
    if (k0_in > 0xFFFFFFFFUL || k1_in > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "_fused.threefry_words: key words must be uint32");
        return NULL;
    }
    static const char *const names[2] = {"w0", "w1"};
    Py_buffer w[2];
    int ok, got = get_unsigned_pair("threefry_words", objs, names, 4, 1, w, &ok);
    if (ok) {
        static const int rot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
        const uint32_t k0 = (uint32_t)k0_in, k1 = (uint32_t)k1_in;
        const uint32_t ks[3] = {k0, k1, k0 ^ k1 ^ 0x1BD11BDAu};
        uint32_t *out0 = w[0].buf, *out1 = w[1].buf;
        Py_ssize_t n = w[0].len / 4;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t x0 = ks[0], x1 = (uint32_t)i + ks[1];
            for (int r = 0; r < 5; r++) {
                for (int j = 0; j < 4; j++) {
                    int s = rot[r % 2][j];
                    x0 += x1;
                    x1 = ((x1 << s) | (x1 >> (32 - s))) ^ x0;
                }
                x0 += ks[(r + 1) % 3];
                x1 += ks[(r + 2) % 3] + (uint32_t)(r + 1);
            }
            out0[i] = x0;
            out1[i] = x1;
        }
        Py_END_ALLOW_THREADS
    }
    while (got-- > 0)
        PyBuffer_Release(&w[got]);
    return ok ? Py_NewRef(Py_None) : NULL;
}

/* sort_u64(a, out): out = np.sort(a) for a 1-D uint64 array (C-contiguous,
 * native byte order; out a separate writable one of the same length).  The
 * sorted order of integers is unique, so any correct sort gives np.sort's
 * result.  tinynet.random.permutation sorts n random 64-bit draws every
 * shuffled epoch, where NumPy took 180 us at n = 7680 (23 ns per element).
 * This is one counting pass on the top bits of (a - min) into ~n/2 buckets,
 * then an insertion sort of each (a bucket holds ~2 values when the values
 * are spread out, as random draws are), or qsort for a bucket of more than
 * SORT_SMALL values, so clustered or repeated values cost O(n log n), not
 * O(n^2). */
#define SORT_SMALL 32

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void
insertion_u64(uint64_t *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++) {
        uint64_t key = v[i];
        Py_ssize_t j = i;
        for (; j > 0 && v[j - 1] > key; j--)
            v[j] = v[j - 1];
        v[j] = key;
    }
}

/* 0 on success, -1 if the bucket counts could not be allocated */
static int
sort_u64_into(const uint64_t *RESTRICT a, uint64_t *RESTRICT out, Py_ssize_t n)
{
    if (n <= SORT_SMALL) {
        memcpy(out, a, (size_t)n * sizeof(uint64_t));
        insertion_u64(out, n);
        return 0;
    }
    uint64_t lo = a[0], hi = a[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
    }
    if (lo == hi) { /* all equal */
        memcpy(out, a, (size_t)n * sizeof(uint64_t));
        return 0;
    }
    int span = 0; /* bits of hi - lo */
    for (uint64_t d = hi - lo; d; d >>= 1)
        span++;
    int bits = 1; /* ~n / 2 buckets, at most 2**16 */
    while (bits < 16 && ((Py_ssize_t)1 << (bits + 1)) <= n)
        bits++;
    if (bits > span)
        bits = span;
    const int shift = span - bits;
    const Py_ssize_t buckets = (Py_ssize_t)1 << bits;
    /* pos[b + 1] counts bucket b; the prefix sums make pos[b] its first slot,
     * and the scatter advances pos[b] to its end */
    Py_ssize_t *pos = calloc((size_t)buckets + 1, sizeof(Py_ssize_t));
    if (pos == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        pos[((a[i] - lo) >> shift) + 1]++;
    for (Py_ssize_t b = 0; b < buckets; b++)
        pos[b + 1] += pos[b];
    for (Py_ssize_t i = 0; i < n; i++)
        out[pos[(a[i] - lo) >> shift]++] = a[i];
    Py_ssize_t begin = 0;
    for (Py_ssize_t b = 0; b < buckets; b++) {
        Py_ssize_t end = pos[b], size = end - begin;
        if (size > SORT_SMALL)
            qsort(out + begin, (size_t)size, sizeof(uint64_t), cmp_u64);
        else if (size > 1)
            insertion_u64(out + begin, size);
        begin = end;
    }
    free(pos);
    return 0;
}

static PyObject *
fused_sort_u64(PyObject *self, PyObject *args)
{
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "OO:sort_u64", &objs[0], &objs[1]))
        return NULL;
    static const char *const names[2] = {"a", "out"};
    Py_buffer w[2];
    int ok, got = get_unsigned_pair("sort_u64", objs, names, 8, 0, w, &ok);
    if (ok) {
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = sort_u64_into(w[0].buf, w[1].buf, w[0].len / 8);
        Py_END_ALLOW_THREADS
        if (status < 0) {
            PyErr_NoMemory();
            ok = 0;
        }
    }
    while (got-- > 0)
        PyBuffer_Release(&w[got]);
    return ok ? Py_NewRef(Py_None) : NULL;
}

static PyMethodDef methods[] = {
    {"adam", fused_adam, METH_VARARGS,
     "adam(p, g, m, v, alpha_neg, keep, c1, c2, eps): Adam._leaf in place, one pass."},
    {"sgd", fused_sgd, METH_VARARGS,
     "sgd(p, g, velocity, neg_lr, momentum, nesterov): SGD._leaf in place, one pass."},
    {"adam_list", fused_adam_list, METH_VARARGS,
     "adam_list(ps, gs, m_flat, v_flat, alpha_neg, keep, c1, c2, eps): adam over lists."},
    {"sgd_list", fused_sgd_list, METH_VARARGS,
     "sgd_list(ps, gs, velocity_flat, neg_lr, momentum, nesterov): sgd over lists."},
    {"colsum", fused_colsum, METH_VARARGS, "colsum(a, out): np.add.reduce(a, axis=0)."},
    {"rowsum", fused_rowsum, METH_VARARGS, "rowsum(a, out): np.add.reduce(a, axis=1)."},
    {"rowmax", fused_rowmax, METH_VARARGS, "rowmax(a, out): np.maximum.reduce(a, axis=1)."},
    {"one_hot", fused_one_hot, METH_VARARGS,
     "one_hot(labels, out): out = (labels[:, None] == arange(k)), zeros elsewhere."},
    {"argmax_hits", fused_argmax_hits, METH_VARARGS,
     "argmax_hits(scores, labels): count of rows with argmax(scores[i]) == labels[i]."},
    {"threefry_words", fused_threefry_words, METH_VARARGS,
     "threefry_words(k0, k1, w0, w1): Threefry-2x32 of counters (0, i) into w0, w1."},
    {"relu_grad", fused_relu_grad, METH_VARARGS,
     "relu_grad(dy, x, out): out = dy * (x > 0), elementwise."},
    {"sort_u64", fused_sort_u64, METH_VARARGS, "sort_u64(a, out): out = np.sort(a), uint64."},
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
