// softmax-dispatch: the compiled NumPy kernels, written once and compiled once per
// instruction set (see simd.h). The layouts, units and arguments are in kernels.h.
//
// Numerics (the same policies as the pure-NumPy kernels, backends/softmax_dispatch_numpy):
//   * float16 is loaded as float16 and computed in float32; float32 and float64 in
//     themselves; every sum (of exp, of g * y, of g, the cross-entropy terms) accumulates
//     in float64, lane by lane in a fixed order;
//   * a row is read three times while it is in cache: its maximum, the sum of
//     exp(x - shift) (softmax keeps those values in a scratch row of the compute dtype),
//     then the result, written once (past the cache where the output is large);
//   * softmax takes shift = 0 where the maximum m is in [-ln 2, log(1/tiny) - log(N)]:
//     the sum is then in [0.5, 1/tiny], nothing overflows, nothing underflows that the
//     shifted form would keep, and x is not rounded by a subtraction; elsewhere
//     shift = m. log_softmax is always (x - m) - log(sum);
//   * the maximum starts at the lowest finite value, so -inf - -inf is never computed:
//     a row of -inf (no mask) gives 0/0 = NaN, as the policy says; NaN or +inf among a
//     row's unmasked values makes those NaN; masked entries are 0 (log: -inf) whatever
//     their row holds, and a fully masked row is all 0 (log: -inf);
//   * every result is divided by the row's sum (a row of one is exactly 1).
// Batch invariance: a row (or a column) is computed by the same operations in the same
// order whatever the other rows hold, how many there are, which thread computes it and
// where it lies in memory (loads are unaligned, chunks start at the row's first element).
#include <cfloat>
#include <cmath>
#include <cstdlib>

#include "kernels.h"
#include "simd.h"

#ifndef SD_TILE_VECTORS
#define SD_TILE_VECTORS 4  // vectors per column tile (see Table::tile)
#endif

namespace SD_ISA {
namespace {

using sd::CEArgs;
using sd::NormArgs;

template <class S> struct Lim;
template <> struct Lim<float> {
    static constexpr float lowest = -FLT_MAX;
    static constexpr double log_inv_tiny = 87.336544750553108987;  // log(1 / FLT_MIN)
};
template <> struct Lim<double> {
    static constexpr double lowest = -DBL_MAX;
    static constexpr double log_inv_tiny = 708.39641853226410622;  // log(1 / DBL_MIN)
};
constexpr double LN2 = 0.69314718055994530942;
constexpr int KV = SD_TILE_VECTORS;

template <class T> using S_t = typename Traits<T>::scalar;
template <class T> using V_t = typename Traits<T>::vec;
template <class T> using M_t = typename Traits<T>::mask;

template <class S> inline S inf_of() { return __builtin_inf(); }
template <> inline float inf_of<float>() { return __builtin_inff(); }
template <class S> inline S nan_of() { return __builtin_nan(""); }
template <> inline float nan_of<float>() { return __builtin_nanf(""); }

// ---------------------------------------------------------------- masks
template <class T>
inline M_t<T> mask_of(const uint8_t* p, int64_t step, int64_t k) {
    constexpr int L = Traits<T>::lanes;
    typedef uint8_t bytes __attribute__((vector_size(L)));
    M_t<T> m{};
    if (step == 0) return p[0] ? m - 1 : m;
    if (k == L) {
        bytes b;
        std::memcpy(&b, p, L);
        return __builtin_convertvector(b, M_t<T>) != 0;
    }
    for (int64_t i = 0; i < k; ++i) m[i] = p[i] ? -1 : 0;
    return m;
}

// ---------------------------------------------------------------- sums
// Float lanes add up segments of SEGMENT vectors in float32 (at most SEGMENT roundings
// per lane), and the segments in float64; float64 lanes keep four interleaved partial
// sums over blocks of 256 vectors, then add up the blocks. The order is fixed by the element's index in its row: a row's sum
// never depends on where the row lies or what else is computed.
constexpr int SEGMENT = 32;
struct AccF {
    static constexpr int SEG = SEGMENT;  // vectors per segment (see `each_seg`)
    vf seg{};
    int count = 0;
    vd lo{}, hi{};
    void add_raw(vf v) { seg += v; }  // (the caller flushes every SEG vectors)
    void flush() {
        vd a, b;
        widen(seg, a, b);
        lo += a;
        hi += b;
        seg = vf{};
        count = 0;
    }
    void add(vf v) {
        seg += v;
        if (++count == SEGMENT) flush();
    }
    void add_prod(vf g, vf y) {
        seg += g * y;
        if (++count == SEGMENT) flush();
    }
    double total() {
        flush();
        return hsum(lo + hi);
    }
    vf lanes() {  // per-lane sums rounded to float (columns)
        flush();
        vf_half a = __builtin_convertvector(lo, vf_half), b = __builtin_convertvector(hi, vf_half);
        vf v;
        std::memcpy(&v, &a, sizeof a);
        std::memcpy(reinterpret_cast<char*>(&v) + sizeof a, &b, sizeof b);
        return v;
    }
    double lane(int i) {
        flush();
        return i < ND ? lo[i] : hi[i - ND];
    }
};
struct AccD {
    static constexpr int SEG = 64;
    vd acc[4] = {}, tot{};  // four interleaved partial sums per lane, then the blocks
    int count = 0;
    void add_raw(vd v) { acc[0] += v; }
    void flush() {
        tot += acc[0];
        acc[0] = vd{};
    }
    void add(vd v) {
        acc[count & 3] += v;
        if (++count == 4 * 64) fold();
    }
    void fold() {
        tot += (acc[0] + acc[1]) + (acc[2] + acc[3]);
        acc[0] = acc[1] = acc[2] = acc[3] = vd{};
        count = 0;
    }
    void add_prod(vd g, vd y) { add(g * y); }
    double total() {
        fold();
        return hsum(tot);
    }
    vd lanes() {
        fold();
        return tot;
    }
    double lane(int i) {
        fold();
        return tot[i];
    }
};
template <class S> struct AccOf;
template <> struct AccOf<float> { typedef AccF type; };
template <> struct AccOf<double> { typedef AccD type; };

// softmax keeps exp(x - shift) between its passes: in the output (float32, float64), or
// in a float32 scratch row (float16).
template <class T> struct StashOf { typedef T type; };
template <> struct StashOf<half_t> { typedef float type; };

template <class T>
inline V_t<T> ld(const T* p, int64_t k, S_t<T> fill) {
    return k == Traits<T>::lanes ? load(p) : load_part(p, k, fill);
}
template <class T>
inline void st(T* p, V_t<T> v, int64_t k) {
    if (k == Traits<T>::lanes)
        store(p, v);
    else
        store_part(p, v, k);
}
// The result's store: streamed past the cache where the call's output is large (it
// would evict the rows being computed, and its lines need not be read first).
template <class T>
inline void st_out(T* p, V_t<T> v, int64_t k, bool stream) {
    if (stream && k == Traits<T>::lanes)
        store_stream(p, v);
    else
        st(p, v, k);
}
// Ask for the next row while this one is computed: its first pass then reads the cache.
template <class T>
inline void prefetch_next(const T* next, int64_t i) {
    if (next) __builtin_prefetch(next + i, 0, 2);
}

// f(i, k) over a row of n elements in vectors: k lanes from element i (k = L but for the
// last, partial vector), the full vectors two at a time for the pipelines.
template <class T, class F>
inline void each(int64_t n, F&& f) {
    constexpr int L = Traits<T>::lanes;
    int64_t i = 0;
#pragma GCC unroll 2
    for (; i + L <= n; i += L) f(i, (int64_t)L);
    if (i < n) f(i, n - i);
}

// `each`, with g() after every Acc::SEG full vectors (from the row's start: segment
// boundaries depend on the element's index only).
template <class T, class Acc, class F, class G>
inline void each_seg(int64_t n, F&& f, G&& g) {
    constexpr int L = Traits<T>::lanes;
    const int64_t full = n - n % L;
    int64_t i = 0;
    while (i < full) {
        const int64_t stop = i + (int64_t)Acc::SEG * L < full ? i + (int64_t)Acc::SEG * L : full;
#pragma GCC unroll 2
        for (; i < stop; i += L) f(i, (int64_t)L);
        g();
    }
    if (i < n) f(i, n - i);
}

template <class T> inline S_t<T> one(const T* p) { return *p; }
template <> inline float one<half_t>(const half_t* p) { return load_part(p, 1, 0.0f)[0]; }

// ================================================================ rows: forward
template <class T, bool LOG>
void forward_line(const T* x, T* y, const uint8_t* m, int64_t ms, int64_t N, S_t<T> hi,
                  S_t<T>* stash, const T* next, bool stream) {
    typedef S_t<T> S;
    typedef V_t<T> V;
    typedef typename AccOf<S>::type Acc;
    const V ninf = splat(-inf_of<S>()), pinf = splat(inf_of<S>());
    auto value = [&](int64_t i, int64_t k) {  // masked entries as -inf
        V v = ld(x + i, k, -inf_of<S>());
        return m ? (mask_of<T>(m + i * ms, ms, k) ? v : ninf) : v;
    };

    // the maximum (NaN sticks) and the minimum of the unmasked values
    V vmax = splat(Lim<S>::lowest), vmin = pinf;
    each<T>(N, [&](int64_t i, int64_t k) {
        V v = ld(x + i, k, -inf_of<S>());
        if (m) {
            const auto keep = mask_of<T>(m + i * ms, ms, k);
            V lo = keep ? v : pinf;
            v = keep ? v : ninf;
            vmin = lo < vmin ? lo : vmin;
        } else {
            if (k < Traits<T>::lanes)
                for (int64_t l = k; l < Traits<T>::lanes; ++l) v[l] = Lim<S>::lowest;
            vmin = v < vmin ? v : vmin;
        }
        vmax = ((v > vmax) | (v != v)) ? v : vmax;
    });
    const S mx = hmax(vmax);
    const S shift = (!LOG && mx >= -LN2 && mx <= hi) ? S(0) : mx;
    const V vsh = splat(shift);
    // every exp(x - shift) of the row in exp_in_range's range (no NaN, no +-inf): the
    // range check is made once for the row
    const S lo = hmin(vmin) - shift, top = mx - shift;
    const bool in_range = lo >= exp_lo(S(0)) && top <= exp_hi(S(0)) && m == nullptr;

    Acc acc;
    auto sum = [&](auto&& ex) {
        each_seg<T, Acc>(
            N,
            [&](int64_t i, int64_t k) {
                prefetch_next(next, i);
                V e = ex(value(i, k) - vsh);
                acc.add_raw(e);
                if (!LOG) st(stash + i, e, k);
            },
            [&] { acc.flush(); });
    };
    if (in_range)
        sum([](V v) { return exp_in_range(v); });
    else
        sum([](V v) { return exp(v); });
    const double s = acc.total();

    if (LOG) {
        const V vm = splat(mx), vl = splat(S(std::log(s)));
        each<T>(N, [&](int64_t i, int64_t k) {
            V r = (ld(x + i, k, S(0)) - vm) - vl;
            if (m) r = mask_of<T>(m + i * ms, ms, k) ? r : ninf;
            st_out(y + i, r, k, stream);
        });
    } else {
        const V vs = splat(S(s));
        each<T>(N, [&](int64_t i, int64_t k) {
            V r = ld(stash + i, k, S(0)) / vs;
            if (m) r = mask_of<T>(m + i * ms, ms, k) ? r : V{};
            st_out(y + i, r, k, stream);
        });
    }
}

template <class T, bool LOG>
bool forward_rows_t(const NormArgs& a, int64_t u0, int64_t u1) {
    typedef S_t<T> S;
    // softmax keeps exp(x - shift) for its last pass in a scratch row of the compute
    // dtype, which stays in cache (the result is written once)
    S* stash = nullptr;
    if (!LOG) {
        stash = static_cast<S*>(std::malloc(sizeof(S) * (size_t)a.N));
        if (!stash) return false;
    }
    const S hi = S(Lim<S>::log_inv_tiny - std::log((double)a.N));
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t p = u / a.Q, q = u % a.Q;
        const T* x = static_cast<const T*>(a.a.data) + p * a.a.s.p + q * a.a.s.q;
        T* y = static_cast<T*>(a.out) + p * a.so.p + q * a.so.q;
        const uint8_t* m = a.mask ? a.mask + p * a.sm.p + q * a.sm.q : nullptr;
        const int64_t un = u + 1, pn = un / a.Q, qn = un % a.Q;
        const T* next = un < u1 ? static_cast<const T*>(a.a.data) + pn * a.a.s.p + qn * a.a.s.q
                                : nullptr;
        forward_line<T, LOG>(x, y, m, a.sm.n, a.N, hi, stash, next, a.stream);
    }
    if (a.stream) fence();
    std::free(stash);
    return true;
}

// ================================================================ rows: backward
// softmax: dx = y * (g - sum(g * y)); log_softmax: dx = g - exp(y) * sum(g); masked
// entries take no part in the sum and get exactly 0.
template <class T, bool LOG>
void backward_line(const T* g, const T* y, T* dx, const uint8_t* m, int64_t ms, int64_t N,
                   const T* gnext, const T* ynext, bool stream) {
    typedef S_t<T> S;
    typedef V_t<T> V;
    typename AccOf<S>::type acc;
    each<T>(N, [&](int64_t i, int64_t k) {
        V gv = ld(g + i, k, S(0));
        if (m) gv = mask_of<T>(m + i * ms, ms, k) ? gv : V{};
        if (LOG) {
            acc.add(gv);
        } else {
            V yv = ld(y + i, k, S(0));
            if (m) yv = mask_of<T>(m + i * ms, ms, k) ? yv : V{};
            acc.add_prod(gv, yv);
        }
    });
    const V vs = splat(S(acc.total()));
    each<T>(N, [&](int64_t i, int64_t k) {
        prefetch_next(gnext, i);
        prefetch_next(ynext, i);
        V gv = ld(g + i, k, S(0)), yv = ld(y + i, k, S(0));
        V r = LOG ? gv - exp(yv) * vs : yv * (gv - vs);
        if (m) r = mask_of<T>(m + i * ms, ms, k) ? r : V{};
        st_out(dx + i, r, k, stream);
    });
}

template <class T, bool LOG>
bool backward_rows_t(const NormArgs& a, int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t p = u / a.Q, q = u % a.Q;
        const T* g = static_cast<const T*>(a.a.data) + p * a.a.s.p + q * a.a.s.q;
        const T* y = static_cast<const T*>(a.b.data) + p * a.b.s.p + q * a.b.s.q;
        T* dx = static_cast<T*>(a.out) + p * a.so.p + q * a.so.q;
        const uint8_t* m = a.mask ? a.mask + p * a.sm.p + q * a.sm.q : nullptr;
        const int64_t un = u + 1, pn = un / a.Q, qn = un % a.Q;
        const bool more = un < u1;
        const T* gn = more ? static_cast<const T*>(a.a.data) + pn * a.a.s.p + qn * a.a.s.q : nullptr;
        const T* yn = more ? static_cast<const T*>(a.b.data) + pn * a.b.s.p + qn * a.b.s.q : nullptr;
        backward_line<T, LOG>(g, y, dx, m, a.sm.n, a.N, gn, yn, a.stream);
    }
    if (a.stream) fence();
    return true;
}

// ================================================================ columns
// One non-last axis (unit stride along Q): a slab of SLAB neighbouring columns of one p,
// streamed row by row (n), each column's statistics in its lane. Two passes over the
// slab: the maximum and the sum of exp(x - max) in one pass, online (where a lane's
// maximum grows, its partial sums are scaled by exp(old - new), which for most data
// happens in the first few rows only), then the result. Each pass reads whole
// contiguous row segments, as the memory's prefetchers like; the column statistics
// (SLAB values each) stay in L1. Memory sees two reads of x and one write, and each
// element takes two exps: keeping whole columns in cache instead (tiles of N rows)
// was slower here, the strided first pass waiting on memory, and so was keeping
// exp(x - a block's max) in the output for a last rescaling pass (one exp, but two
// more passes over the output); profile_numpy.py "columns" has the figures.
constexpr int64_t SLAB_AHEAD = 2;  // rows ahead that a pass asks the cache for

template <class T> constexpr int64_t slab() { return sd::SLAB_BYTES / (int64_t)sizeof(S_t<T>); }

template <class T>
struct Tile {
    int nv;        // vectors in this tile (the last tile of a row may be narrower)
    int64_t last;  // lanes in the last vector
    int64_t lanes(int j) const { return j == nv - 1 ? last : Traits<T>::lanes; }
};

template <class T>
inline Tile<T> tile_at(int64_t width) {
    constexpr int L = Traits<T>::lanes;
    Tile<T> t;
    t.nv = (int)((width + L - 1) / L);
    t.last = width - (int64_t)(t.nv - 1) * L;
    return t;
}

constexpr int PREFETCH_ROWS = 8;  // rows ahead that the first pass asks the cache for

template <class T>
inline void prefetch_row(const T* p, int64_t width) {
    const char* c = reinterpret_cast<const char*>(p);
    for (int64_t b = 0; b < width * (int64_t)sizeof(T); b += 64) __builtin_prefetch(c + b);
}

inline int64_t tiles_per_row(int64_t Q, int64_t tile) { return (Q + tile - 1) / tile; }

// The statistics of one slab: the running max and sum of each column (partial sums in
// the compute dtype, folded into float64 every SEGMENT rows).
template <class T>
struct SlabStats {
    S_t<T>* mx;
    S_t<T>* part;
    double* total;
};

template <class T>
inline void fold(const SlabStats<T>& ss, int64_t width) {
    for (int64_t i = 0; i < width; ++i) {
        ss.total[i] += (double)ss.part[i];
        ss.part[i] = S_t<T>(0);
    }
}

template <class T, bool LOG>
void forward_slab(const T* x, int64_t sx, T* y, int64_t sy, const uint8_t* m, int64_t smn,
                  int64_t smq, int64_t N, int64_t width, S_t<T> hi, const SlabStats<T>& ss,
                  bool stream) {
    typedef S_t<T> S;
    typedef V_t<T> V;
    const V ninf = splat(-inf_of<S>());
    auto value = [&](int64_t n, int64_t i, int64_t k) {
        V v = ld(x + n * sx + i, k, -inf_of<S>());
        return m ? (mask_of<T>(m + n * smn + i * smq, smq, k) ? v : ninf) : v;
    };
    for (int64_t i = 0; i < width; ++i) {
        ss.mx[i] = Lim<S>::lowest;
        ss.part[i] = S(0);
        ss.total[i] = 0.0;
    }
    for (int64_t n = 0; n < N; ++n) {
        const T* ahead = n + SLAB_AHEAD < N ? x + (n + SLAB_AHEAD) * sx : nullptr;
        each<T>(width, [&](int64_t i, int64_t k) {
            prefetch_next(ahead, i);
            V v = value(n, i, k);
            V mv = ld(ss.mx + i, k, Lim<S>::lowest);
            V ps = ld(ss.part + i, k, S(0));
            if (__builtin_expect(any(v > mv), 0)) {  // a lane's maximum grows: rescale it
                V nm = max(mv, v);
                V f = exp(mv - nm);
                ps *= f;
                for (int64_t l = 0; l < k; ++l) ss.total[i + l] *= (double)f[l];
                mv = nm;
                st(ss.mx + i, mv, k);
            }
            st(ss.part + i, ps + exp(v - mv), k);
        });
        if ((n + 1) % SEGMENT == 0) fold(ss, width);
    }
    fold(ss, width);
    // the shift and the divisor (log: the log-sum) of each column; softmax takes its
    // columns whose maximum is in [-ln 2, hi] unshifted, as the rows kernel does, with
    // the sum of exp(x) = sum of exp(x - max) * exp(max) in float64, rounded once
    for (int64_t i = 0; i < width; ++i) {
        const S mx = ss.mx[i];
        if (LOG) {
            ss.part[i] = S(std::log(ss.total[i]));
        } else if (mx >= -LN2 && mx <= hi) {
            ss.part[i] = S(ss.total[i] * std::exp((double)mx));
            ss.mx[i] = S(0);
        } else {
            ss.part[i] = S(ss.total[i]);
        }
    }
    for (int64_t n = 0; n < N; ++n) {
        const T* ahead = n + SLAB_AHEAD < N ? x + (n + SLAB_AHEAD) * sx : nullptr;
        each<T>(width, [&](int64_t i, int64_t k) {
            prefetch_next(ahead, i);
            V v = value(n, i, k), mv = ld(ss.mx + i, k, S(0)), d = ld(ss.part + i, k, S(1));
            V r = LOG ? (v - mv) - d : exp(v - mv) / d;
            if (m) r = mask_of<T>(m + n * smn + i * smq, smq, k) ? r : (LOG ? ninf : V{});
            st_out(y + n * sy + i, r, k, stream);
        });
    }
}

template <class T>
bool slab_scratch(SlabStats<T>& st) {
    constexpr int64_t W = slab<T>();
    char* p = static_cast<char*>(std::malloc((size_t)W * (2 * sizeof(S_t<T>) + sizeof(double))));
    if (!p) return false;
    st.total = reinterpret_cast<double*>(p);
    st.mx = reinterpret_cast<S_t<T>*>(p + W * sizeof(double));
    st.part = st.mx + W;
    return true;
}

template <class T, bool LOG>
bool forward_cols_t(const NormArgs& a, int64_t u0, int64_t u1) {
    constexpr int64_t W = slab<T>();
    SlabStats<T> st;
    if (!slab_scratch(st)) return false;
    const S_t<T> hi = S_t<T>(Lim<S_t<T>>::log_inv_tiny - std::log((double)a.N));
    const int64_t per = tiles_per_row(a.Q, W);
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t p = u / per, q0 = (u % per) * W;
        const int64_t width = a.Q - q0 < W ? a.Q - q0 : W;
        const T* x = static_cast<const T*>(a.a.data) + p * a.a.s.p + q0;
        T* y = static_cast<T*>(a.out) + p * a.so.p + q0;
        const uint8_t* m = a.mask ? a.mask + p * a.sm.p + q0 * a.sm.q : nullptr;
        forward_slab<T, LOG>(x, a.a.s.n, y, a.so.n, m, a.sm.n, a.sm.q, a.N, width, hi, st,
                             a.stream);
    }
    if (a.stream) fence();
    std::free(st.total);
    return true;
}

// The backward: sum(g * y) (softmax) or sum(g) (log_softmax) per column, then dx.
template <class T, bool LOG>
void backward_slab(const T* g, int64_t sg, const T* y, int64_t sy, T* dx, int64_t sd,
                   const uint8_t* m, int64_t smn, int64_t smq, int64_t N, int64_t width,
                   const SlabStats<T>& ss, bool stream) {
    typedef S_t<T> S;
    typedef V_t<T> V;
    for (int64_t i = 0; i < width; ++i) {
        ss.part[i] = S(0);
        ss.total[i] = 0.0;
    }
    for (int64_t n = 0; n < N; ++n) {
        const bool more = n + SLAB_AHEAD < N;
        const T* ga = more ? g + (n + SLAB_AHEAD) * sg : nullptr;
        const T* ya = more && !LOG ? y + (n + SLAB_AHEAD) * sy : nullptr;
        each<T>(width, [&](int64_t i, int64_t k) {
            prefetch_next(ga, i);
            prefetch_next(ya, i);
            V gv = ld(g + n * sg + i, k, S(0));
            if (!LOG) gv *= ld(y + n * sy + i, k, S(0));
            if (m) gv = mask_of<T>(m + n * smn + i * smq, smq, k) ? gv : V{};
            st(ss.part + i, ld(ss.part + i, k, S(0)) + gv, k);
        });
        if ((n + 1) % SEGMENT == 0) fold(ss, width);
    }
    fold(ss, width);
    for (int64_t i = 0; i < width; ++i) ss.part[i] = S(ss.total[i]);
    for (int64_t n = 0; n < N; ++n) {
        const bool more = n + SLAB_AHEAD < N;
        const T* ga = more ? g + (n + SLAB_AHEAD) * sg : nullptr;
        const T* ya = more ? y + (n + SLAB_AHEAD) * sy : nullptr;
        each<T>(width, [&](int64_t i, int64_t k) {
            prefetch_next(ga, i);
            prefetch_next(ya, i);
            V gv = ld(g + n * sg + i, k, S(0)), yv = ld(y + n * sy + i, k, S(0));
            V s = ld(ss.part + i, k, S(0));
            V r = LOG ? gv - exp(yv) * s : yv * (gv - s);
            if (m) r = mask_of<T>(m + n * smn + i * smq, smq, k) ? r : V{};
            st_out(dx + n * sd + i, r, k, stream);
        });
    }
}

template <class T, bool LOG>
bool backward_cols_t(const NormArgs& a, int64_t u0, int64_t u1) {
    constexpr int64_t W = slab<T>();
    SlabStats<T> st;
    if (!slab_scratch(st)) return false;
    const int64_t per = tiles_per_row(a.Q, W);
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t p = u / per, q0 = (u % per) * W;
        const int64_t width = a.Q - q0 < W ? a.Q - q0 : W;
        const T* g = static_cast<const T*>(a.a.data) + p * a.a.s.p + q0;
        const T* y = static_cast<const T*>(a.b.data) + p * a.b.s.p + q0;
        T* dx = static_cast<T*>(a.out) + p * a.so.p + q0;
        const uint8_t* m = a.mask ? a.mask + p * a.sm.p + q0 * a.sm.q : nullptr;
        backward_slab<T, LOG>(g, a.a.s.n, y, a.b.s.n, dx, a.so.n, m, a.sm.n, a.sm.q, a.N, width,
                              st, a.stream);
    }
    if (a.stream) fence();
    std::free(st.total);
    return true;
}

// ================================================================ cross-entropy
// Per sample, with a the weighted, smoothed target (index target t: a_c = eps/C * w_c,
// plus (1 - eps) * w_t at c = t; probabilities q: a_c = (q_c (1 - eps) + eps/C) * w_c):
//   loss = -sum_{a_c != 0} a_c * z_c, z = (x - m) - log(sum exp(x - m));
//   dx   = (softmax(x) * sum(a) - a) * scale.
// Ignored samples: loss 0 and dx exactly 0; an out-of-range class index: NaN (the
// public function refuses those where it can read the target).
struct Sample {
    bool keep, bad;
    int64_t t;
    double wt;
};

inline Sample sample_of(const CEArgs& a, int64_t p, int64_t q) {
    Sample s{true, false, 0, 1.0};
    if (!a.index_target) return s;
    s.t = a.t[p * a.tp + q * a.tq];
    s.keep = !(a.has_ignore && s.t == a.ignore);
    s.bad = s.keep && (s.t < 0 || s.t >= a.C);
    return s;
}

template <class T>
void ce_line(const CEArgs& a, const T* x, const T* prob, T* dx, const Sample& smp, double scale,
             S_t<T>* loss, float* scratch) {
    typedef S_t<T> S;
    typedef V_t<T> V;
    typedef typename StashOf<T>::type W;
    constexpr int L = Traits<T>::lanes;
    const int64_t C = a.C;
    const S* w = static_cast<const S*>(a.weight);
    const double eps = a.eps, epsc = a.eps / (double)C;
    W* stash = dx ? (sizeof(T) == 2 ? reinterpret_cast<W*>(scratch) : reinterpret_cast<W*>(dx))
                  : nullptr;
    if (!smp.keep || smp.bad) {
        const S fill = smp.bad ? nan_of<S>() : S(0);
        *loss = fill;
        if (dx)
            for (int64_t i = 0; i < C; i += L) st(dx + i, splat(fill), C - i < L ? C - i : L);
        return;
    }
    V vmax = splat(Lim<S>::lowest);
    each<T>(C, [&](int64_t i, int64_t k) { vmax = max(vmax, ld(x + i, k, -inf_of<S>())); });
    const S mx = hmax(vmax);
    const V vm = splat(mx);
    // s = sum exp(x - m); sw = sum_{a_c != 0} a_c (x_c - m) over the smoothing (index) or
    // the whole target (probabilities); sa = sum a (probabilities)
    typename AccOf<S>::type acc, accw, acca;
    const bool smooth = a.index_target && eps > 0;
    const V c1 = splat(S(1.0 - eps)), ec = splat(S(epsc));
    each<T>(C, [&](int64_t i, int64_t k) {
        V v = ld(x + i, k, -inf_of<S>());
        V e = exp(v - vm);
        acc.add(e);
        if (stash) st(stash + i, e, k);
        if (smooth || !a.index_target) {
            V wv = w ? ld(w + i, k, S(0)) : splat(S(1));
            if (!w && k < L)
                for (int64_t l = k; l < L; ++l) wv[l] = S(0);
            V av = wv;
            if (!a.index_target) av = (ld(prob + i, k, S(0)) * c1 + ec) * wv;
            V term = av != V{} ? av * (v - vm) : V{};
            accw.add(term);
            if (!a.index_target) acca.add(av);
        }
    });
    const double s = acc.total(), lse = std::log(s);
    double lossv;
    double suma;
    S c1t = 0;
    if (a.index_target) {
        c1t = S((1.0 - eps) * smp.wt);
        const S zt = (one(x + smp.t) - mx) - S(lse);
        lossv = c1t != 0 ? -(double)(c1t * zt) : 0.0;
        if (smooth) lossv -= epsc * (accw.total() - lse * a.wtotal);
        suma = (double)c1t + epsc * a.wtotal;
    } else {
        suma = acca.total();
        lossv = -(accw.total() - lse * suma);
    }
    *loss = S(lossv);
    if (!dx) return;
    const V vs = splat(S(s)), vsa = splat(S(suma)), vsc = splat(S(scale));
    each<T>(C, [&](int64_t i, int64_t k) {
        V wv = w ? ld(w + i, k, S(0)) : splat(S(1));
        V av = a.index_target ? ec * wv : (ld(prob + i, k, S(0)) * c1 + ec) * wv;
        if (a.index_target && smp.t >= i && smp.t < i + k) av[smp.t - i] += c1t;
        V r = (ld(stash + i, k, S(0)) / vs * vsa - av) * vsc;
        st(dx + i, r, k);
    });
}

template <class T>
double ce_rows_t(const CEArgs& a, int64_t u0, int64_t u1, bool* ok) {
    float* scratch = nullptr;
    if (a.dx && sizeof(T) == 2) {
        scratch = static_cast<float*>(std::malloc(sizeof(float) * (size_t)a.C));
        if (!scratch) {
            *ok = false;
            return 0.0;
        }
    }
    const S_t<T>* w = static_cast<const S_t<T>*>(a.weight);
    double wsum = 0.0;
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t p = u / a.Q, q = u % a.Q;
        Sample smp = sample_of(a, p, q);
        if (smp.keep && !smp.bad) {
            smp.wt = (a.index_target && w) ? (double)w[smp.t] : 1.0;
            wsum += smp.wt;
        }
        const T* x = static_cast<const T*>(a.x.data) + p * a.x.s.p + q * a.x.s.q;
        const T* pr = a.index_target
                          ? nullptr
                          : static_cast<const T*>(a.prob.data) + p * a.prob.s.p + q * a.prob.s.q;
        T* dx = a.dx ? static_cast<T*>(a.dx) + p * a.sdx.p + q * a.sdx.q : nullptr;
        if (!a.loss) continue;  // the weights only (the "mean" denominator)
        const double scale = a.scale ? a.scale[u] : a.scale1;
        ce_line<T>(a, x, pr, dx, smp, scale, static_cast<S_t<T>*>(a.loss) + u, scratch);
    }
    std::free(scratch);
    *ok = true;
    return wsum;
}

// Columns: a tile of neighbouring samples (unit stride along q), the classes down N.
template <class T>
double ce_tile(const CEArgs& a, int64_t p, int64_t q0, int64_t width, float* scratch) {
    typedef S_t<T> S;
    typedef V_t<T> V;
    typedef M_t<T> M;
    typedef typename StashOf<T>::type W;
    typedef typename Traits<T>::index I;  // int32 or int64 lanes
    constexpr int L = Traits<T>::lanes;
    const Tile<T> tl = tile_at<T>(width);
    const int64_t C = a.C;
    const S* w = static_cast<const S*>(a.weight);
    const double eps = a.eps, epsc = a.eps / (double)C;
    const bool smooth = a.index_target && eps > 0;
    const T* x = static_cast<const T*>(a.x.data) + p * a.x.s.p + q0;
    const int64_t sx = a.x.s.n;
    const T* pr = a.index_target ? nullptr : static_cast<const T*>(a.prob.data) + p * a.prob.s.p + q0;
    const int64_t spr = a.index_target ? 0 : a.prob.s.n;
    T* dx = a.dx ? static_cast<T*>(a.dx) + p * a.sdx.p + q0 : nullptr;
    const int64_t sdx = a.sdx.n;
    W* stash = dx ? (sizeof(T) == 2 ? reinterpret_cast<W*>(scratch) : reinterpret_cast<W*>(dx))
                  : nullptr;
    const int64_t sst = sizeof(T) == 2 ? (int64_t)KV * L : sdx;
    S* loss = static_cast<S*>(a.loss) + p * a.Q + q0;

    // per lane: the sample, its target, whether it counts
    Sample smp[KV * L];
    M tv[KV], okv[KV], badv[KV];
    V c1v[KV], scalev[KV];
    double wsum = 0.0;
    for (int j = 0; j < tl.nv; ++j) {
        for (int l = 0; l < L; ++l) {
            const int64_t lane = (int64_t)j * L + l;
            Sample s{false, false, -1, 0.0};
            if (lane < width) {
                s = sample_of(a, p, q0 + lane);
                if (s.keep && !s.bad) {
                    s.wt = (a.index_target && w) ? (double)w[s.t] : 1.0;
                    wsum += s.wt;
                }
            }
            smp[lane] = s;
            okv[j][l] = (lane < width && s.keep && !s.bad) ? -1 : 0;
            badv[j][l] = (lane < width && s.bad) ? -1 : 0;
            tv[j][l] = (I)((s.keep && !s.bad) ? s.t : -1);
            c1v[j][l] = S((1.0 - eps) * s.wt);
            scalev[j][l] = (lane < width) ? S(a.scale ? a.scale[p * a.Q + q0 + lane] : a.scale1)
                                          : S(0);
        }
    }
    if (!a.loss) return wsum;  // the weights only (the "mean" denominator)
    V vmax[KV];
    for (int j = 0; j < KV; ++j) vmax[j] = splat(Lim<S>::lowest);
    for (int64_t c = 0; c < C; ++c) {
        if (c + PREFETCH_ROWS < C) prefetch_row(x + (c + PREFETCH_ROWS) * sx, width);
        for (int j = 0; j < tl.nv; ++j)
            vmax[j] = max(vmax[j], ld(x + c * sx + j * L, tl.lanes(j), -inf_of<S>()));
    }
    typename AccOf<S>::type acc[KV], accw[KV], acca[KV];
    const V c1 = splat(S(1.0 - eps)), ec = splat(S(epsc));
    for (int64_t c = 0; c < C; ++c) {
        const V wc = splat(w ? w[c] : S(1));
        for (int j = 0; j < tl.nv; ++j) {
            const int64_t k = tl.lanes(j);
            V v = ld(x + c * sx + j * L, k, -inf_of<S>());
            V e = exp(v - vmax[j]);
            acc[j].add(e);
            if (stash) st(stash + c * sst + j * L, e, k);
            if (smooth || !a.index_target) {
                V av = a.index_target ? wc : (ld(pr + c * spr + j * L, k, S(0)) * c1 + ec) * wc;
                accw[j].add(av != V{} ? av * (v - vmax[j]) : V{});
                if (!a.index_target) acca[j].add(av);
            }
        }
    }
    V vs[KV], vsa[KV];
    for (int j = 0; j < tl.nv; ++j) {
        vs[j] = acc[j].lanes();
        for (int l = 0; l < L; ++l) {
            const int64_t lane = (int64_t)j * L + l;
            if (lane >= width) {
                vsa[j][l] = S(0);
                continue;
            }
            const Sample& s = smp[lane];
            const double sum = acc[j].lane(l), lse = std::log(sum);
            double lossv, suma;
            if (a.index_target) {
                if (!s.keep || s.bad) {
                    loss[lane] = s.bad ? nan_of<S>() : S(0);
                    vsa[j][l] = S(0);
                    continue;
                }
                const S mx = vmax[j][l];
                const S zt = (one(x + s.t * sx + lane) - mx) - S(lse);
                const S c1t = c1v[j][l];
                lossv = c1t != 0 ? -(double)(c1t * zt) : 0.0;
                if (smooth) lossv -= epsc * (accw[j].lane(l) - lse * a.wtotal);
                suma = (double)c1t + epsc * a.wtotal;
            } else {
                suma = acca[j].lane(l);
                lossv = -(accw[j].lane(l) - lse * suma);
            }
            loss[lane] = S(lossv);
            vsa[j][l] = S(suma);
        }
    }
    if (!dx) return wsum;
    const V vnan = splat(nan_of<S>());
    for (int64_t c = 0; c < C; ++c) {
        const V wc = splat(w ? w[c] : S(1));
        for (int j = 0; j < tl.nv; ++j) {
            const int64_t k = tl.lanes(j);
            V av;
            if (a.index_target) {
                av = ec * wc;
                av = (tv[j] == (I)c) ? av + c1v[j] : av;
            } else {
                av = (ld(pr + c * spr + j * L, k, S(0)) * c1 + ec) * wc;
            }
            V r = (ld(stash + c * sst + j * L, k, S(0)) / vs[j] * vsa[j] - av) * scalev[j];
            r = okv[j] ? r : (badv[j] ? vnan : V{});
            st(dx + c * sdx + j * L, r, k);
        }
    }
    return wsum;
}

template <class T>
double ce_cols_t(const CEArgs& a, int64_t u0, int64_t u1, bool* ok) {
    constexpr int64_t TILE = (int64_t)KV * Traits<T>::lanes;
    float* scratch = nullptr;
    if (a.dx && sizeof(T) == 2) {
        scratch = static_cast<float*>(std::malloc(sizeof(float) * (size_t)(a.C * TILE)));
        if (!scratch) {
            *ok = false;
            return 0.0;
        }
    }
    const int64_t per = tiles_per_row(a.Q, TILE);
    double wsum = 0.0;
    for (int64_t u = u0; u < u1; ++u) {
        const int64_t p = u / per, q0 = (u % per) * TILE;
        const int64_t width = a.Q - q0 < TILE ? a.Q - q0 : TILE;
        wsum += ce_tile<T>(a, p, q0, width, scratch);
    }
    std::free(scratch);
    *ok = true;
    return wsum;
}

// ================================================================ dispatch on dtype
#define SD_NORM_ENTRY(name, impl)                                                         \
    bool name(const NormArgs& a, int64_t u0, int64_t u1) {                                \
        switch (a.dtype) {                                                                \
            case sd::F16: return a.log ? impl<half_t, true>(a, u0, u1) : impl<half_t, false>(a, u0, u1); \
            case sd::F32: return a.log ? impl<float, true>(a, u0, u1) : impl<float, false>(a, u0, u1);   \
            default: return a.log ? impl<double, true>(a, u0, u1) : impl<double, false>(a, u0, u1);      \
        }                                                                                 \
    }

SD_NORM_ENTRY(forward_rows, forward_rows_t)
SD_NORM_ENTRY(forward_cols, forward_cols_t)
SD_NORM_ENTRY(backward_rows, backward_rows_t)
SD_NORM_ENTRY(backward_cols, backward_cols_t)

double ce_rows(const CEArgs& a, int64_t u0, int64_t u1, bool* ok) {
    switch (a.dtype) {
        case sd::F16: return ce_rows_t<half_t>(a, u0, u1, ok);
        case sd::F32: return ce_rows_t<float>(a, u0, u1, ok);
        default: return ce_rows_t<double>(a, u0, u1, ok);
    }
}

double ce_cols(const CEArgs& a, int64_t u0, int64_t u1, bool* ok) {
    switch (a.dtype) {
        case sd::F16: return ce_cols_t<half_t>(a, u0, u1, ok);
        case sd::F32: return ce_cols_t<float>(a, u0, u1, ok);
        default: return ce_cols_t<double>(a, u0, u1, ok);
    }
}

template <class S>
void exp_loop(const S* x, S* y, int64_t n) {
    each<S>(n, [&](int64_t i, int64_t k) { st(y + i, exp(ld(x + i, k, S(0))), k); });
}

void exp_f32(const float* x, float* y, int64_t n) { exp_loop<float>(x, y, n); }
void exp_f64(const double* x, double* y, int64_t n) { exp_loop<double>(x, y, n); }

void half_to_float(const uint16_t* h, float* f, int64_t n) {
    const half_t* hh = reinterpret_cast<const half_t*>(h);
    each<float>(n, [&](int64_t i, int64_t k) { st(f + i, ld(hh + i, k, 0.0f), k); });
}

void float_to_half(const float* f, uint16_t* h, int64_t n) {
    half_t* hh = reinterpret_cast<half_t*>(h);
    each<float>(n, [&](int64_t i, int64_t k) { st(hh + i, ld(f + i, k, 0.0f), k); });
}

}  // namespace

extern const sd::Table table;
const sd::Table table = {
    SD_ISA_NAME, VB,      KV,      forward_rows,  forward_cols,  backward_rows, backward_cols,
    ce_rows,     ce_cols, exp_f32, exp_f64,       half_to_float, float_to_half,
};

}  // namespace SD_ISA
