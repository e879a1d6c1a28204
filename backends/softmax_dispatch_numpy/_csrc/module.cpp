// softmax-dispatch: softmax_dispatch_numpy._native, the Python side of the compiled
// NumPy kernels.
//
// It picks, once at import, the widest instruction set this build compiled that the CPU
// (and the operating system) supports, checks every array it is handed against the
// geometry it is told (dtypes, writability, and that every element the kernel will touch
// lies inside the array), and runs the kernels with the GIL released on the kernels' own
// thread pool (pool.h), on as many threads as SOFTMAX_DISPATCH_NUM_THREADS asks for.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>

#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "pool.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <thread>
#include <vector>
#if defined(__linux__)
#include <sched.h>
#endif

#if defined(SD_HAVE_AVX512)
SD_DECLARE_TABLE(isa_avx512)
#endif
#if defined(SD_HAVE_AVX2)
SD_DECLARE_TABLE(isa_avx2)
#endif
SD_DECLARE_TABLE(isa_baseline)

#if (defined(__x86_64__) || defined(_M_X64))
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace {

// ------------------------------------------------------------------ instruction sets
struct Isa {
    const sd::Table* table;
    bool supported;
};

#if (defined(__x86_64__) || defined(_M_X64))
void cpuid(int leaf, int sub, unsigned r[4]) {
#if defined(_MSC_VER)
    int v[4];
    __cpuidex(v, leaf, sub);
    for (int i = 0; i < 4; ++i) r[i] = (unsigned)v[i];
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

unsigned long long xgetbv0() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#endif
}

// AVX2 + FMA + F16C (x86-64-v3's vector part), and AVX-512 F/DQ/BW/VL (x86-64-v4), each
// only where the operating system saves the registers (XCR0).
void detect(bool* avx2, bool* avx512) {
    unsigned r[4], r7[4] = {0, 0, 0, 0};
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    cpuid(1, 0, r);
    const bool osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    const bool fma = (r[2] >> 12) & 1, f16c = (r[2] >> 29) & 1;
    if (max_leaf >= 7) cpuid(7, 0, r7);
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    const bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
    *avx2 = avx && ymm && fma && f16c && ((r7[1] >> 5) & 1);
    *avx512 = *avx2 && zmm && ((r7[1] >> 16) & 1) /* F */ && ((r7[1] >> 17) & 1) /* DQ */ &&
              ((r7[1] >> 30) & 1) /* BW */ && ((r7[1] >> 31) & 1) /* VL */;
}
#else
void detect(bool* avx2, bool* avx512) { *avx2 = *avx512 = false; }
#endif

// widest first
Isa g_isas[3];
int g_count = 0;
const sd::Table* g_table = nullptr;

void init_isas() {
    bool avx2 = false, avx512 = false;
    detect(&avx2, &avx512);
    (void)avx2;
    (void)avx512;
#if defined(SD_HAVE_AVX512)
    g_isas[g_count++] = {&isa_avx512::table, avx512};
#endif
#if defined(SD_HAVE_AVX2)
    g_isas[g_count++] = {&isa_avx2::table, avx2};
#endif
    g_isas[g_count++] = {&isa_baseline::table, true};
    for (int i = 0; i < g_count; ++i)
        if (g_isas[i].supported) {
            g_table = g_isas[i].table;
            break;
        }
}

// ------------------------------------------------------------------ argument checks
int dtype_code(PyArrayObject* a) {
    if (!PyArray_ISNBO(PyArray_DESCR(a)->byteorder)) return -1;
    switch (PyArray_TYPE(a)) {
        case NPY_HALF: return sd::F16;
        case NPY_FLOAT: return sd::F32;
        case NPY_DOUBLE: return sd::F64;
        default: return -1;
    }
}

PyArrayObject* as_array(PyObject* o, const char* label) {
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", label,
                     Py_TYPE(o)->tp_name);
        return nullptr;
    }
    return reinterpret_cast<PyArrayObject*>(o);
}

// Every element (p, n, q) of a (P, N, Q) view with these element strides lies inside `a`.
bool inside(PyArrayObject* a, int64_t P, int64_t N, int64_t Q, const sd::Strides& s,
            const char* label) {
    if (P == 0 || N == 0 || Q == 0) return true;
    const int64_t isz = PyArray_ITEMSIZE(a);
    int64_t lo = 0, hi = 0;
    const int64_t dims[3] = {P, N, Q}, st[3] = {s.p, s.n, s.q};
    for (int i = 0; i < 3; ++i) {
        const int64_t d = (dims[i] - 1) * st[i] * isz;
        (d < 0 ? lo : hi) += d;
    }
    int64_t alo = 0, ahi = 0;
    for (int i = 0; i < PyArray_NDIM(a); ++i) {
        if (PyArray_DIM(a, i) == 0) {
            PyErr_Format(PyExc_ValueError, "%s is empty", label);
            return false;
        }
        const int64_t d = (int64_t)(PyArray_DIM(a, i) - 1) * PyArray_STRIDE(a, i);
        (d < 0 ? alo : ahi) += d;
    }
    if (lo < alo || hi > ahi) {
        PyErr_Format(PyExc_ValueError,
                     "the (%lld, %lld, %lld) view of %s reaches outside the array",
                     (long long)P, (long long)N, (long long)Q, label);
        return false;
    }
    return true;
}

bool parse_strides(PyObject* t, sd::Strides* s, const char* label) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
        PyErr_Format(PyExc_TypeError, "%s strides must be a tuple of 3 ints", label);
        return false;
    }
    int64_t v[3];
    for (int i = 0; i < 3; ++i) {
        v[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
        if (v[i] == -1 && PyErr_Occurred()) return false;
    }
    *s = {v[0], v[1], v[2]};
    return true;
}

// ------------------------------------------------------------------ threads
//: Inputs smaller than this run on the calling thread: below it, handing half the work
//: to a worker costs more than it saves (``python benchmarks/profile_numpy.py``, "threads").
constexpr int64_t PARALLEL_MIN_BYTES = 1 << 16;
//: A chunk handed to a thread: a quarter of a thread's share, within [16 KiB, 4 MiB] of
//: input. 4 MiB runs: NumPy asks for transparent huge pages on large arrays, and a 2 MiB
//: page of a fresh result that two threads write at once is zeroed by one while the
//: other waits.
constexpr int64_t CHUNK_MIN_BYTES = 1 << 14, CHUNK_MAX_BYTES = 1 << 22;
//: Results at least this large are stored past the cache: they would not stay in it, and
//: the lines they overwrite need not be read first (glibc's memcpy switches at about
//: 3/4 of the shared cache per thread; ``python benchmarks/profile_numpy.py``, "streaming").
constexpr int64_t STREAM_MIN_BYTES = 1 << 24;
const char* const THREADS_ENV = "SOFTMAX_DISPATCH_NUM_THREADS";

int cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n ? (int)n : 1;
}

// The thread count: SOFTMAX_DISPATCH_NUM_THREADS (read at every call that would use
// threads, so it can change at run time), else the cores this process may use. -1 with
// a ValueError set where the variable is not a positive integer.
int threads_for(int64_t nbytes) {
    if (nbytes < PARALLEL_MIN_BYTES) return 1;
    const char* raw = std::getenv(THREADS_ENV);
    while (raw && (*raw == ' ' || *raw == '\t')) ++raw;
    if (!raw || !*raw) return cores();
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(raw, &end, 10);
    while (end && (*end == ' ' || *end == '\t' || *end == '\n')) ++end;
    if (errno || !end || *end || v < 1 || v > 4096) {
        PyErr_Format(PyExc_ValueError, "%s must be a positive integer, got '%s'", THREADS_ENV,
                     std::getenv(THREADS_ENV));
        return -1;
    }
    return (int)v;
}

// Units [0, units) of one call, in chunks shared among the pool's threads.
struct Job {
    int64_t units, per;
    bool (*norm)(const sd::NormArgs&, int64_t, int64_t);
    const sd::NormArgs* na;
    double (*ce)(const sd::CEArgs&, int64_t, int64_t, bool*);
    const sd::CEArgs* ca;
    std::vector<double> sums;  // cross-entropy: each chunk's summed weight
    std::atomic<bool> failed{false};
};

void run_chunk(void* ctx, int64_t c) {
    Job* j = static_cast<Job*>(ctx);
    const int64_t u0 = c * j->per, u1 = u0 + j->per < j->units ? u0 + j->per : j->units;
    bool ok = true;
    if (j->norm) {
        ok = j->norm(*j->na, u0, u1);
    } else {
        j->sums[(size_t)c] = j->ce(*j->ca, u0, u1, &ok);
    }
    if (!ok) j->failed.store(true, std::memory_order_relaxed);
}

// Runs the job with the GIL released; false with MemoryError set where a kernel ran out
// of memory, or with ValueError where the thread count is not valid.
bool run_job(Job& j, int64_t unit_bytes) {
    const int64_t nbytes = j.units * unit_bytes;
    const int threads = threads_for(nbytes);
    if (threads < 0) return false;
    int64_t chunk = nbytes / (4 * (int64_t)threads);
    chunk = chunk < CHUNK_MIN_BYTES ? CHUNK_MIN_BYTES : chunk > CHUNK_MAX_BYTES ? CHUNK_MAX_BYTES : chunk;
    j.per = threads == 1 ? j.units : (chunk + unit_bytes - 1) / (unit_bytes ? unit_bytes : 1);
    if (j.per < 1) j.per = 1;
    const int64_t chunks = j.units == 0 ? 0 : (j.units + j.per - 1) / j.per;
    if (j.ce) j.sums.assign((size_t)chunks, 0.0);
    Py_BEGIN_ALLOW_THREADS;
    sdpool::run(run_chunk, &j, chunks, threads);
    Py_END_ALLOW_THREADS;
    if (j.failed.load()) {
        PyErr_NoMemory();
        return false;
    }
    return true;
}

int64_t lanes_of(int dtype) { return g_table->vector_bytes / (dtype == sd::F64 ? 8 : 4); }
int64_t tile_of(int dtype) { return g_table->tile_vectors * lanes_of(dtype); }

// ------------------------------------------------------------------ the common calls
// The softmax axes, if they are the trailing axes of `a` in order: the row length.
bool trailing(PyObject* axes, int ndim, int64_t* n, PyArrayObject* a) {
    if (!PyTuple_Check(axes)) return false;
    const Py_ssize_t k = PyTuple_GET_SIZE(axes);
    if (k == 0 || k > ndim) return false;
    int64_t len = 1;
    for (Py_ssize_t i = 0; i < k; ++i) {
        const long ax = PyLong_AsLong(PyTuple_GET_ITEM(axes, i));
        if (ax == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return false;
        }
        if (ax != ndim - k + i) return false;
        len *= PyArray_DIM(a, (int)ax);
    }
    *n = len;
    return true;
}

bool fast_ok(PyArrayObject* a, int code) {
    return code >= 0 && PyArray_IS_C_CONTIGUOUS(a) && PyArray_SIZE(a) > 0;
}

// fast_forward(x, axes, log) -> a fresh result, or None where the call is not the common
// one (an exact ndarray, float16/32/64 in native byte order, C-contiguous, the softmax
// axes trailing): the caller then takes the general path.
PyObject* fast_forward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fast_forward(x, axes, log)");
        return nullptr;
    }
    if (!PyArray_CheckExact(args[0])) Py_RETURN_NONE;
    PyArrayObject* x = reinterpret_cast<PyArrayObject*>(args[0]);
    const int code = dtype_code(x);
    int64_t n = 0;
    if (!fast_ok(x, code) || !trailing(args[1], PyArray_NDIM(x), &n, x)) Py_RETURN_NONE;
    const bool log = PyObject_IsTrue(args[2]) == 1;
    PyArrayObject* y = reinterpret_cast<PyArrayObject*>(
        PyArray_SimpleNew(PyArray_NDIM(x), PyArray_DIMS(x), PyArray_TYPE(x)));
    if (!y) return nullptr;
    sd::NormArgs a{};
    a.P = PyArray_SIZE(x) / n;
    a.N = n;
    a.Q = 1;
    a.a = {PyArray_DATA(x), {n, 1, 0}};
    a.out = PyArray_DATA(y);
    a.so = {n, 1, 0};
    a.dtype = code;
    a.log = log;
    a.stream = PyArray_NBYTES(y) >= STREAM_MIN_BYTES;
    Job j;
    j.units = a.P;
    j.norm = g_table->forward_rows;
    j.na = &a;
    j.ce = nullptr;
    if (!run_job(j, n * PyArray_ITEMSIZE(x))) {
        Py_DECREF(y);
        return nullptr;
    }
    return reinterpret_cast<PyObject*>(y);
}

// fast_backward(grad, y, axes, log): the same for the backward passes (grad and y of one
// dtype and shape, both C-contiguous).
PyObject* fast_backward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fast_backward(grad, y, axes, log)");
        return nullptr;
    }
    if (!PyArray_CheckExact(args[0]) || !PyArray_CheckExact(args[1])) Py_RETURN_NONE;
    PyArrayObject* g = reinterpret_cast<PyArrayObject*>(args[0]);
    PyArrayObject* y = reinterpret_cast<PyArrayObject*>(args[1]);
    const int code = dtype_code(y);
    int64_t n = 0;
    if (!fast_ok(y, code) || !fast_ok(g, dtype_code(g)) || PyArray_TYPE(g) != PyArray_TYPE(y) ||
        !PyArray_SAMESHAPE(g, y) || !trailing(args[2], PyArray_NDIM(y), &n, y))
        Py_RETURN_NONE;
    const bool log = PyObject_IsTrue(args[3]) == 1;
    PyArrayObject* d = reinterpret_cast<PyArrayObject*>(
        PyArray_SimpleNew(PyArray_NDIM(y), PyArray_DIMS(y), PyArray_TYPE(y)));
    if (!d) return nullptr;
    sd::NormArgs a{};
    a.P = PyArray_SIZE(y) / n;
    a.N = n;
    a.Q = 1;
    a.a = {PyArray_DATA(g), {n, 1, 0}};
    a.b = {PyArray_DATA(y), {n, 1, 0}};
    a.out = PyArray_DATA(d);
    a.so = {n, 1, 0};
    a.dtype = code;
    a.log = log;
    a.stream = PyArray_NBYTES(d) >= STREAM_MIN_BYTES;
    Job j;
    j.units = a.P;
    j.norm = g_table->backward_rows;
    j.na = &a;
    j.ce = nullptr;
    if (!run_job(j, 2 * n * PyArray_ITEMSIZE(y))) {
        Py_DECREF(d);
        return nullptr;
    }
    return reinterpret_cast<PyObject*>(d);
}

// ------------------------------------------------------------------ the general calls
enum NormKind { FWD_ROWS = 0, FWD_COLS = 1, BWD_ROWS = 2, BWD_COLS = 3 };

// norm(kind, a, b, out, mask, geometry, sa, sb, so, sm, log): a (P, N, Q) view of each
// array, given as the shape and one strides tuple per array (elements).
PyObject* norm(PyObject*, PyObject* args) {
    int kind, log;
    PyObject *ao, *bo, *oo, *mo, *sa, *sb, *so, *sm;
    long long P, N, Q;
    if (!PyArg_ParseTuple(args, "iOOOO(LLL)OOOOp", &kind, &ao, &bo, &oo, &mo, &P, &N, &Q, &sa,
                          &sb, &so, &sm, &log))
        return nullptr;
    const bool backward = kind == BWD_ROWS || kind == BWD_COLS;
    const bool cols = kind == FWD_COLS || kind == BWD_COLS;
    PyArrayObject *a = as_array(ao, backward ? "grad" : "x"), *out = as_array(oo, "out");
    if (!a || !out) return nullptr;
    PyArrayObject* b = nullptr;
    if (backward && !(b = as_array(bo, "y"))) return nullptr;
    PyArrayObject* m = nullptr;
    if (mo != Py_None && !(m = as_array(mo, "mask"))) return nullptr;
    sd::NormArgs k{};
    k.P = P;
    k.N = N;
    k.Q = Q;
    k.dtype = dtype_code(out);
    k.log = log;
    if (k.dtype < 0 || PyArray_TYPE(a) != PyArray_TYPE(out) || dtype_code(a) < 0 ||
        (b && (PyArray_TYPE(b) != PyArray_TYPE(out) || dtype_code(b) < 0))) {
        PyErr_SetString(PyExc_TypeError,
                        "arrays must share one dtype: float16, float32 or float64, native");
        return nullptr;
    }
    if (!PyArray_ISWRITEABLE(out)) {
        PyErr_SetString(PyExc_ValueError, "out is read-only");
        return nullptr;
    }
    if (m && PyArray_TYPE(m) != NPY_BOOL) {
        PyErr_SetString(PyExc_TypeError, "mask must be boolean");
        return nullptr;
    }
    if (P < 0 || N < 1 || Q < 0) {
        PyErr_SetString(PyExc_ValueError, "geometry needs P, Q >= 0 and N >= 1");
        return nullptr;
    }
    if (!parse_strides(sa, &k.a.s, "a") || !parse_strides(so, &k.so, "out") ||
        (b && !parse_strides(sb, &k.b.s, "b")) || (m && !parse_strides(sm, &k.sm, "mask")))
        return nullptr;
    // the vector axis: unit stride (n for rows, q for columns); the mask 0 or 1 there
    const bool unit = cols ? (k.a.s.q == 1 && k.so.q == 1 && (!b || k.b.s.q == 1))
                           : (k.a.s.n == 1 && k.so.n == 1 && (!b || k.b.s.n == 1));
    const int64_t mstep = m ? (cols ? k.sm.q : k.sm.n) : 0;
    if (!unit || (m && mstep != 0 && mstep != 1)) {
        PyErr_SetString(PyExc_ValueError, "the vector axis needs unit strides (mask: 0 or 1)");
        return nullptr;
    }
    if (!inside(a, P, N, Q, k.a.s, backward ? "grad" : "x") || !inside(out, P, N, Q, k.so, "out") ||
        (b && !inside(b, P, N, Q, k.b.s, "y")) || (m && !inside(m, P, N, Q, k.sm, "mask")))
        return nullptr;
    const int64_t tile = sd::slab_lanes(k.dtype);
    k.a.data = PyArray_DATA(a);
    k.b.data = b ? PyArray_DATA(b) : nullptr;
    k.out = PyArray_DATA(out);
    k.mask = m ? static_cast<const uint8_t*>(PyArray_DATA(m)) : nullptr;
    k.stream = P * N * Q * (int64_t)PyArray_ITEMSIZE(out) >= STREAM_MIN_BYTES;
    const sd::Table* t = g_table;
    Job j;
    j.units = cols ? P * ((Q + tile - 1) / tile) : P * Q;
    j.norm = kind == FWD_ROWS   ? t->forward_rows
             : kind == FWD_COLS ? t->forward_cols
             : kind == BWD_ROWS ? t->backward_rows
                                : t->backward_cols;
    j.na = &k;
    j.ce = nullptr;
    const int64_t unit_bytes = (backward ? 2 : 1) * N * (cols ? tile : 1) * PyArray_ITEMSIZE(out);
    if (!run_job(j, unit_bytes)) return nullptr;
    Py_RETURN_NONE;
}

bool contiguous_of(PyArrayObject* a, int type, int64_t count, const char* label, bool write) {
    if (PyArray_TYPE(a) != type || !PyArray_ISNBO(PyArray_DESCR(a)->byteorder) ||
        !PyArray_IS_C_CONTIGUOUS(a) || PyArray_SIZE(a) < count || (write && !PyArray_ISWRITEABLE(a))) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a contiguous%s array of %lld elements of its compute dtype",
                     label, write ? ", writeable" : "", (long long)count);
        return false;
    }
    return true;
}

// ce(x, target, weight, loss, dx, scale, (P, C, Q), sx, st, sdx, index_target, eps,
//    ignore, wtotal, scale1, cols) -> the counted samples' summed weight.
// target: int64 class indices with strides st = (p, 0, q), or probabilities of x's dtype
// with strides st; weight: None or C values of the compute dtype; loss: P * Q values of
// the compute dtype; dx: None or the gradient (strides sdx); scale: None or P * Q
// float64 values (else scale1 for every sample).
PyObject* ce(PyObject*, PyObject* args) {
    PyObject *xo, *to, *wo, *lo, *dxo, *sco, *sxo, *sto, *sdo, *igo;
    long long P, C, Q;
    int index_target, cols;
    double eps, wtotal, scale1;
    if (!PyArg_ParseTuple(args, "OOOOOO(LLL)OOOpdOddp", &xo, &to, &wo, &lo, &dxo, &sco, &P, &C,
                          &Q, &sxo, &sto, &sdo, &index_target, &eps, &igo, &wtotal, &scale1,
                          &cols))
        return nullptr;
    PyArrayObject *x = as_array(xo, "logits"), *t = as_array(to, "target");
    if (!x || !t) return nullptr;
    PyArrayObject* loss = nullptr;  // None: the weights of the counted samples only
    if (lo != Py_None && !(loss = as_array(lo, "loss"))) return nullptr;
    sd::CEArgs k{};
    k.P = P;
    k.C = C;
    k.Q = Q;
    k.dtype = dtype_code(x);
    if (k.dtype < 0) {
        PyErr_SetString(PyExc_TypeError, "logits must be float16, float32 or float64, native");
        return nullptr;
    }
    const int ctype = k.dtype == sd::F64 ? NPY_DOUBLE : NPY_FLOAT;
    if (P < 0 || C < 1 || Q < 0 || (cols && C > INT32_MAX)) {
        PyErr_SetString(PyExc_ValueError, "geometry needs P, Q >= 0 and 1 <= C");
        return nullptr;
    }
    sd::Strides st{};
    if (!parse_strides(sxo, &k.x.s, "logits") || !parse_strides(sto, &st, "target"))
        return nullptr;
    if (!inside(x, P, C, Q, k.x.s, "logits")) return nullptr;
    k.x.data = PyArray_DATA(x);
    k.index_target = index_target;
    if (index_target) {
        if (PyArray_TYPE(t) != NPY_INT64 || !PyArray_ISNBO(PyArray_DESCR(t)->byteorder)) {
            PyErr_SetString(PyExc_TypeError, "class indices must be int64");
            return nullptr;
        }
        if (!inside(t, P, 1, Q, {st.p, 0, st.q}, "target")) return nullptr;
        k.t = static_cast<const int64_t*>(PyArray_DATA(t));
        k.tp = st.p;
        k.tq = st.q;
    } else {
        if (PyArray_TYPE(t) != PyArray_TYPE(x) || !inside(t, P, C, Q, st, "target")) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "probabilities must have the logits' dtype");
            return nullptr;
        }
        k.prob = {PyArray_DATA(t), st};
    }
    if (wo != Py_None) {
        PyArrayObject* w = as_array(wo, "weight");
        if (!w || !contiguous_of(w, ctype, C, "weight", false)) return nullptr;
        k.weight = PyArray_DATA(w);
    }
    if (loss) {
        if (!contiguous_of(loss, ctype, P * Q, "loss", true)) return nullptr;
        k.loss = PyArray_DATA(loss);
    } else if (dxo != Py_None) {
        PyErr_SetString(PyExc_ValueError, "dx needs loss");
        return nullptr;
    }
    if (dxo != Py_None) {
        PyArrayObject* dx = as_array(dxo, "dx");
        if (!dx || !parse_strides(sdo, &k.sdx, "dx")) return nullptr;
        if (PyArray_TYPE(dx) != PyArray_TYPE(x) || !PyArray_ISWRITEABLE(dx)) {
            PyErr_SetString(PyExc_TypeError, "dx must be writeable, of the logits' dtype");
            return nullptr;
        }
        if (!inside(dx, P, C, Q, k.sdx, "dx")) return nullptr;
        k.dx = PyArray_DATA(dx);
    }
    if (sco != Py_None) {
        PyArrayObject* sc = as_array(sco, "scale");
        if (!sc || !contiguous_of(sc, NPY_DOUBLE, P * Q, "scale", false)) return nullptr;
        k.scale = static_cast<const double*>(PyArray_DATA(sc));
    }
    const bool unit = cols ? (k.x.s.q == 1 && (index_target || st.q == 1) && (!k.dx || k.sdx.q == 1))
                           : (k.x.s.n == 1 && (index_target || st.n == 1) && (!k.dx || k.sdx.n == 1));
    if (!unit) {
        PyErr_SetString(PyExc_ValueError, "the vector axis needs unit strides");
        return nullptr;
    }
    k.eps = eps;
    k.has_ignore = igo != Py_None;
    if (k.has_ignore) {
        k.ignore = PyLong_AsLongLong(igo);
        if (k.ignore == -1 && PyErr_Occurred()) return nullptr;
    }
    k.wtotal = wtotal;
    k.scale1 = scale1;
    const int64_t tile = tile_of(k.dtype);
    Job j;
    j.units = cols ? P * ((Q + tile - 1) / tile) : P * Q;
    j.norm = nullptr;
    j.ce = cols ? g_table->ce_cols : g_table->ce_rows;
    j.ca = &k;
    const int64_t touched = k.loss ? (k.dx ? 2 : 1) : 0;  // (only the weights: no logits)
    if (!run_job(j, touched * C * (cols ? tile : 1) * PyArray_ITEMSIZE(x))) return nullptr;
    // chunk by chunk, in chunk order: the same bits whatever the thread count
    double wsum = 0.0;
    for (double v : j.sums) wsum += v;
    return PyFloat_FromDouble(wsum);
}

// ------------------------------------------------------------------ elementwise (tests)
PyObject* unary(PyObject* arg, int in_type, int out_type, const char* what,
                void (*f32)(const void*, void*, int64_t), void (*f64)(const void*, void*, int64_t)) {
    PyArrayObject* a = reinterpret_cast<PyArrayObject*>(
        PyArray_FROMANY(arg, in_type, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED));
    if (!a) return nullptr;
    (void)what;
    PyArrayObject* r = reinterpret_cast<PyArrayObject*>(
        PyArray_SimpleNew(PyArray_NDIM(a), PyArray_DIMS(a), out_type));
    if (!r) {
        Py_DECREF(a);
        return nullptr;
    }
    const int64_t n = PyArray_SIZE(a);
    Py_BEGIN_ALLOW_THREADS;
    (in_type == NPY_DOUBLE ? f64 : f32)(PyArray_DATA(a), PyArray_DATA(r), n);
    Py_END_ALLOW_THREADS;
    Py_DECREF(a);
    return reinterpret_cast<PyObject*>(r);
}

void exp32(const void* x, void* y, int64_t n) {
    g_table->exp_f32(static_cast<const float*>(x), static_cast<float*>(y), n);
}
void exp64(const void* x, void* y, int64_t n) {
    g_table->exp_f64(static_cast<const double*>(x), static_cast<double*>(y), n);
}
void h2f(const void* x, void* y, int64_t n) {
    g_table->half_to_float(static_cast<const uint16_t*>(x), static_cast<float*>(y), n);
}
void f2h(const void* x, void* y, int64_t n) {
    g_table->float_to_half(static_cast<const float*>(x), static_cast<uint16_t*>(y), n);
}

PyObject* exp_(PyObject*, PyObject* arg) {
    if (!PyArray_Check(arg) || (PyArray_TYPE((PyArrayObject*)arg) != NPY_FLOAT &&
                                PyArray_TYPE((PyArrayObject*)arg) != NPY_DOUBLE)) {
        PyErr_SetString(PyExc_TypeError, "exp takes a float32 or float64 array");
        return nullptr;
    }
    const int t = PyArray_TYPE((PyArrayObject*)arg);
    return unary(arg, t, t, "exp", exp32, exp64);
}
PyObject* half_to_float(PyObject*, PyObject* arg) {
    return unary(arg, NPY_UINT16, NPY_FLOAT, "half_to_float", h2f, h2f);
}
PyObject* float_to_half(PyObject*, PyObject* arg) {
    return unary(arg, NPY_FLOAT, NPY_UINT16, "float_to_half", f2h, f2h);
}

// ------------------------------------------------------------------ which instruction set
PyObject* isa(PyObject*, PyObject*) { return PyUnicode_FromString(g_table->name); }

PyObject* isas(PyObject*, PyObject*) {
    PyObject* out = PyTuple_New(g_count);
    if (!out) return nullptr;
    for (int i = 0; i < g_count; ++i) {
        PyObject* item = Py_BuildValue("(sO)", g_isas[i].table->name,
                                       g_isas[i].supported ? Py_True : Py_False);
        if (!item) {
            Py_DECREF(out);
            return nullptr;
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

PyObject* use_isa(PyObject*, PyObject* arg) {
    const char* name = PyUnicode_AsUTF8(arg);
    if (!name) return nullptr;
    for (int i = 0; i < g_count; ++i) {
        if (std::strcmp(g_isas[i].table->name, name) != 0) continue;
        if (!g_isas[i].supported) {
            PyErr_Format(PyExc_RuntimeError, "this CPU cannot run the %s kernels", name);
            return nullptr;
        }
        const char* before = g_table->name;
        g_table = g_isas[i].table;
        return PyUnicode_FromString(before);
    }
    PyErr_Format(PyExc_ValueError, "no %s kernels in this build", name);
    return nullptr;
}

PyObject* tile(PyObject*, PyObject* arg) {
    const long code = PyLong_AsLong(arg);
    if (code == -1 && PyErr_Occurred()) return nullptr;
    return PyLong_FromLongLong(tile_of((int)code));
}

PyMethodDef methods[] = {
    {"fast_forward", (PyCFunction)(void (*)(void))fast_forward, METH_FASTCALL,
     "fast_forward(x, axes, log): the common forward call, or None"},
    {"fast_backward", (PyCFunction)(void (*)(void))fast_backward, METH_FASTCALL,
     "fast_backward(grad, y, axes, log): the common backward call, or None"},
    {"norm", norm, METH_VARARGS,
     "norm(kind, a, b, out, mask, (P, N, Q), sa, sb, so, sm, log)"},
    {"ce", ce, METH_VARARGS, "ce(...): cross-entropy losses (and gradient); the summed weight"},
    {"exp", exp_, METH_O, "exp(x): the kernels' exp of a float32 or float64 array"},
    {"half_to_float", half_to_float, METH_O, "float16 bits (uint16) to float32"},
    {"float_to_half", float_to_half, METH_O, "float32 to float16 bits (uint16)"},
    {"isa", isa, METH_NOARGS, "the instruction set the kernels run"},
    {"isas", isas, METH_NOARGS, "(name, supported by this CPU) for each set built, widest first"},
    {"use_isa", use_isa, METH_O, "use_isa(name): run that set's kernels; returns the previous"},
    {"tile", tile, METH_O, "tile(dtype_code): columns per tile of cross-entropy's columns kernel"},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "The compiled NumPy kernels (see softmax_dispatch_numpy._compiled).", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__native(void) {
    import_array();
    init_isas();
    return PyModule_Create(&module);
}
