// softmax-dispatch: fused CUDA kernels for CuPy arrays.
//
// Loaded by softmax_dispatch_cupy._module with cupy.RawModule (one template
// instantiation per module, named by a name expression; softmax_dispatch_cupy._geometry
// chooses the instantiation and the launch). Every index is 64-bit, every loop over rows
// is grid-stride, so arrays over 2^31 elements and grids of any size are covered.
//
// Semantics (the same as the written-once kernels in softmax_dispatch._ops):
//   * float16 is loaded and stored as float16 and computed in float32; float32 and
//     float64 in themselves; expf/exp, logf/log, no fast-math;
//   * a masked entry (mask[i] == 0) counts as -inf and its output is 0 (log: -inf),
//     whatever the rest of its row holds;
//   * a fully masked row gives 0 (log: -inf) everywhere;
//   * NaN or +inf anywhere among a row's unmasked entries, or no finite unmasked entry
//     (a row of -inf), makes the row's unmasked outputs NaN;
//   * the online merge never computes -inf - -inf: a part of a row that is all -inf
//     contributes a sum of 0 at a shift of -inf, and a shift is subtracted only when the
//     merged maximum is finite.
//
// Kernels:
//   sd_forward_warp<T, VEC, ITEMS, WIDTH>  WIDTH lanes per row, row in registers
//   sd_forward_block<T, VEC>               block per row, row in dynamic shared memory
//   sd_forward_partial<T, VEC> +
//   sd_forward_finish<T, VEC>              rows cut into `splits` chunks: (max, sum) per
//                                          chunk, then every chunk merges its row's
//                                          partials and normalises (splits = 1: the
//                                          online two-pass kernel for very long rows)
//   sd_forward_column<T>                   softmax over a strided axis, thread per column
//   sd_backward_warp / _partial / _finish / _column: the same shapes for the VJPs
//   sd_ce_forward<T, VEC>, sd_ce_backward<T, VEC, ONCHIP>: cross-entropy with class indices,
//                                          block per sample

// The row-state arithmetic below (up to "loads and stores") is host code too: a C++
// compiler builds it with SD_HOST_ONLY defined, and tests/test_cupy_kernels.py checks its
// policies against NumPy on the CPU.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SD_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define SD_HD inline
#endif

typedef long long i64;

// The most threads per block the block, split and cross-entropy kernels are launched with
// (softmax_dispatch_cupy._geometry.MAX_BLOCK): as their launch bounds, it keeps their
// registers within what a block that size may have (128 per thread). The warp (128
// threads) and column (256) kernels need no bound: 255 registers fit such blocks.
#define SD_MAX_BLOCK 512

// float16 as stored: converted with cvt instructions, so no header is needed.
struct sd_half {
    unsigned short bits;
};

template <class T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

#if defined(__CUDA_ARCH__) || defined(__CUDACC_RTC__)
SD_HD float sd_inf(float) { return __int_as_float(0x7f800000); }
SD_HD double sd_inf(double) { return __longlong_as_double(0x7ff0000000000000LL); }
SD_HD float sd_nan(float) { return __int_as_float(0x7fffffff); }
SD_HD double sd_nan(double) { return __longlong_as_double(0x7fffffffffffffffLL); }
#else
SD_HD float sd_inf(float) { return __builtin_huge_valf(); }
SD_HD double sd_inf(double) { return __builtin_huge_val(); }
SD_HD float sd_nan(float) { return __builtin_nanf(""); }
SD_HD double sd_nan(double) { return __builtin_nan(""); }
#endif
SD_HD float sd_exp(float v) { return expf(v); }
SD_HD double sd_exp(double v) { return exp(v); }
SD_HD float sd_log(float v) { return logf(v); }
SD_HD double sd_log(double v) { return log(v); }

// max that propagates NaN (fmax would drop it).
template <class A> SD_HD A nan_max(A a, A b) {
    return (a != a) ? a : ((b != b) ? b : (a > b ? a : b));
}

template <class A> SD_HD bool sd_finite(A v) { return v > -sd_inf(A()) && v < sd_inf(A()); }

// ------------------------------------------------------------------- the row's state
// (max, sum of exp(v - max), whether anything was unmasked) of part of a row.
template <class A> struct Row {
    A m;
    A s;
    int any;
};

template <class A> SD_HD Row<A> row_empty() {
    Row<A> r;
    r.m = -sd_inf(A());
    r.s = A(0);
    r.any = 0;
    return r;
}

// Two parts of a row as one. The sum is rescaled only to a finite maximum: parts that
// are all -inf (m = -inf, s = 0) add 0 and never meet -inf - -inf; a NaN or +inf maximum
// fixes the row's result (NaN), so its sum is not needed.
template <class A> SD_HD Row<A> row_merge(Row<A> a, Row<A> b) {
    Row<A> r;
    r.any = a.any | b.any;
    r.m = nan_max(a.m, b.m);
    r.s = sd_finite(r.m) ? a.s * sd_exp(a.m - r.m) + b.s * sd_exp(b.m - r.m) : A(0);
    return r;
}

// N more values (masked ones already -inf) into a row's state: one rescale per call.
template <class A, int N> SD_HD Row<A> row_add(Row<A> r, const A (&v)[N]) {
    A m = r.m;
#pragma unroll
    for (int i = 0; i < N; ++i) m = nan_max(m, v[i]);
    if (!sd_finite(m)) {
        r.m = m;
        r.s = A(0);
        return r;
    }
    A s = r.s * sd_exp(r.m - m);  // r.m is -inf (s = 0) or finite
#pragma unroll
    for (int i = 0; i < N; ++i) s += sd_exp(v[i] - m);
    r.m = m;
    r.s = s;
    return r;
}

// What a row's outputs are, from its state.
enum { SD_NORMAL = 0, SD_ALL_MASKED = 1, SD_NAN = 2 };

template <class A> struct Norm {
    A m;
    A s;
    A log_s;
    int kind;
};

template <class A> SD_HD Norm<A> row_norm(Row<A> r, int masked) {
    Norm<A> n;
    n.m = r.m;
    n.s = r.s;
    n.log_s = A(0);
    if (masked && !r.any) {
        n.kind = SD_ALL_MASKED;
    } else if (!(r.m < sd_inf(A())) || !(r.s > A(0))) {  // NaN, +inf, or nothing finite
        n.kind = SD_NAN;
    } else {
        n.kind = SD_NORMAL;
        n.log_s = sd_log(r.s);
    }
    return n;
}

// The output for value v of a row: a masked entry (keep == 0) is 0 (log: -inf) whatever
// the rest of its row holds. softmax divides by the sum (a row of one element is exactly
// 1); log_softmax is (v - max) - log(sum).
template <class A> SD_HD A norm_value(const Norm<A>& n, A v, int keep, int log) {
    if (!keep || n.kind == SD_ALL_MASKED) return log ? -sd_inf(A()) : A(0);
    if (n.kind == SD_NAN) return sd_nan(A());
    return log ? (v - n.m) - n.log_s : sd_exp(v - n.m) / n.s;
}

#ifndef SD_HOST_ONLY

// ----------------------------------------------------------------- loads and stores
__device__ __forceinline__ float to_acc(sd_half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
    return f;
}
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

__device__ __forceinline__ void from_acc(float v, sd_half* out) {
    unsigned short b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(v));
    out->bits = b;
}
__device__ __forceinline__ void from_acc(float v, float* out) { *out = v; }
__device__ __forceinline__ void from_acc(double v, double* out) { *out = v; }

// VEC values of type T as one 128-bit access (VEC * sizeof(T) == 16, address aligned:
// the geometry picks VEC > 1 only then), or one scalar access (VEC == 1).
template <class T, int VEC> union Pack {
    uint4 raw;
    T v[VEC];
};

template <class T, int VEC>
__device__ __forceinline__ void load(const T* p, typename Acc<T>::type (&out)[VEC]) {
    if constexpr (VEC == 1) {
        out[0] = to_acc(*p);
    } else {
        Pack<T, VEC> k;
        k.raw = *reinterpret_cast<const uint4*>(p);
#pragma unroll
        for (int i = 0; i < VEC; ++i) out[i] = to_acc(k.v[i]);
    }
}

template <class T, int VEC>
__device__ __forceinline__ void store(T* p, const typename Acc<T>::type (&in)[VEC]) {
    if constexpr (VEC == 1) {
        from_acc(in[0], p);
    } else {
        Pack<T, VEC> k;
#pragma unroll
        for (int i = 0; i < VEC; ++i) from_acc(in[i], &k.v[i]);
        *reinterpret_cast<uint4*>(p) = k.raw;
    }
}

// Masked entries as -inf; returns whether any of the VEC entries is unmasked.
template <class A, int VEC>
__device__ __forceinline__ int apply_mask(const unsigned char* mask, i64 at, int masked,
                                          A (&v)[VEC]) {
    if (!masked) return 1;
    int any = 0;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
        if (mask[at + i]) {
            any = 1;
        } else {
            v[i] = -sd_inf(A());
        }
    }
    return any;
}

// ------------------------------------------------------------------------ reductions
struct Max {
    template <class A> __device__ __forceinline__ A operator()(A a, A b) const { return nan_max(a, b); }
};
struct Sum {
    template <class A> __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct Or {
    __device__ __forceinline__ int operator()(int a, int b) const { return a | b; }
};
struct Merge {
    template <class A> __device__ __forceinline__ Row<A> operator()(Row<A> a, Row<A> b) const {
        return row_merge(a, b);
    }
};

template <class V> __device__ __forceinline__ V shfl_xor(V v, int lanes, int width) {
    return __shfl_xor_sync(0xffffffffu, v, lanes, width);
}
template <class A> __device__ __forceinline__ Row<A> shfl_xor(Row<A> r, int lanes, int width) {
    r.m = __shfl_xor_sync(0xffffffffu, r.m, lanes, width);
    r.s = __shfl_xor_sync(0xffffffffu, r.s, lanes, width);
    r.any = __shfl_xor_sync(0xffffffffu, r.any, lanes, width);
    return r;
}

// Over groups of WIDTH lanes (every lane of the warp takes part); every lane of a group
// ends with the group's value.
template <int WIDTH, class V, class Op> __device__ __forceinline__ V group_reduce(V v, Op op) {
#pragma unroll
    for (int o = WIDTH / 2; o > 0; o >>= 1) v = op(v, shfl_xor(v, o, WIDTH));
    return v;
}

// Over the block (blockDim.x a multiple of 32, every thread takes part; scratch: 32
// values of shared memory). Every warp reduces the warps' partials in the same order, so
// every thread gets the same bits; the last barrier frees scratch for the next call.
template <class V, class Op>
__device__ __forceinline__ V block_reduce(V v, V identity, V* scratch, Op op) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = group_reduce<32>(v, op);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = group_reduce<32>(lane < warps ? scratch[lane] : identity, op);
    __syncthreads();
    return v;
}
template <class A> __device__ __forceinline__ A block_max(A v, A* scratch) {
    return block_reduce(v, -sd_inf(A()), scratch, Max());
}
template <class A> __device__ __forceinline__ A block_sum(A v, A* scratch) {
    return block_reduce(v, A(0), scratch, Sum());
}
template <class A> __device__ __forceinline__ Row<A> block_row(Row<A> r, Row<A>* scratch) {
    return block_reduce(r, row_empty<A>(), scratch, Merge());
}
__device__ __forceinline__ int block_or(int v) { return __syncthreads_or(v); }

// ---------------------------------------------------------------- who does what
// The warp kernels: lanes in groups of WIDTH, a row per group; a warp's groups take rows
// first, first + 1, ..., then step by stride (the loop's trip count is the warp's, so
// every lane reaches every shuffle).
template <int WIDTH> struct WarpRows {
    int sub, group;
    i64 first, stride;
    __device__ __forceinline__ WarpRows() {
        const int lane = threadIdx.x & 31;
        const i64 warps = blockDim.x >> 5;
        sub = lane % WIDTH;
        group = lane / WIDTH;
        first = ((i64)blockIdx.x * warps + (threadIdx.x >> 5)) * (32 / WIDTH);
        stride = (i64)gridDim.x * warps * (32 / WIDTH);
    }
};

// The split kernels: job j is chunk (j % splits) of row (j / splits), columns
// [begin, end); off is the row's first element.
struct Chunk {
    i64 row, begin, end, off;
};
__device__ __forceinline__ Chunk chunk_of(i64 job, i64 cols, i64 chunk, i64 splits) {
    Chunk c;
    c.row = job / splits;
    c.begin = (job % splits) * chunk;
    c.end = c.begin + chunk < cols ? c.begin + chunk : cols;
    c.off = c.row * cols;
    return c;
}

// ------------------------------------------------------------------ forward: warp
// Groups of WIDTH lanes, one row each; a lane holds ITEMS packs of VEC values, pack k at
// column (k * WIDTH + lane) * VEC. cols <= ITEMS * WIDTH * VEC; cols % VEC == 0.
template <class T, int VEC, int ITEMS, int WIDTH>
__global__ void sd_forward_warp(const T* __restrict__ x, const unsigned char* __restrict__ mask,
                                T* __restrict__ y, i64 rows, i64 cols, int masked, int log) {
    typedef typename Acc<T>::type A;
    const WarpRows<WIDTH> w;
    const int sub = w.sub;
    for (i64 base = w.first; base < rows; base += w.stride) {  // the same trips for a warp
        const i64 row = base + w.group;
        const bool active = row < rows;
        const i64 off = row * cols;
        A v[ITEMS][VEC];
        A m = -sd_inf(A());
        int any = 0;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const i64 j = ((i64)k * WIDTH + sub) * VEC;
            if (active && j < cols) {
                load<T, VEC>(x + off + j, v[k]);
                any |= apply_mask<A, VEC>(mask, off + j, masked, v[k]);
            } else {
#pragma unroll
                for (int i = 0; i < VEC; ++i) v[k][i] = -sd_inf(A());
            }
#pragma unroll
            for (int i = 0; i < VEC; ++i) m = nan_max(m, v[k][i]);
        }
        m = group_reduce<WIDTH>(m, Max());
        any = group_reduce<WIDTH>(any, Or());
        A s = A(0);
        if (sd_finite(m)) {
#pragma unroll
            for (int k = 0; k < ITEMS; ++k)
#pragma unroll
                for (int i = 0; i < VEC; ++i) s += sd_exp(v[k][i] - m);
        }
        s = group_reduce<WIDTH>(s, Sum());
        Row<A> r;
        r.m = m;
        r.s = s;
        r.any = any;
        const Norm<A> n = row_norm(r, masked);
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const i64 j = ((i64)k * WIDTH + sub) * VEC;
            if (active && j < cols) {
                A o[VEC];
#pragma unroll
                for (int i = 0; i < VEC; ++i)
                    o[i] = norm_value(n, v[k][i], !masked || mask[off + j + i], log);
                store<T, VEC>(y + off + j, o);
            }
        }
    }
}

// ----------------------------------------------------------------- forward: block
// One block per row; the row, as computed values, in dynamic shared memory (cols values
// of Acc<T>). Each thread reads back only the packs it wrote, so the only barriers are
// the reductions'. Value i of pack q sits at [i * packs + q]: no bank conflicts.
template <class T, int VEC>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_forward_block(const T* __restrict__ x, const unsigned char* __restrict__ mask,
                                 T* __restrict__ y, i64 rows, i64 cols, int masked, int log) {
    typedef typename Acc<T>::type A;
    extern __shared__ __align__(16) unsigned char sd_smem[];
    A* buf = reinterpret_cast<A*>(sd_smem);
    __shared__ A scratch[32];
    const i64 packs = cols / VEC;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const i64 off = row * cols;
        A m = -sd_inf(A());
        int any = 0;
        for (i64 q = threadIdx.x; q < packs; q += blockDim.x) {
            A v[VEC];
            load<T, VEC>(x + off + q * VEC, v);
            any |= apply_mask<A, VEC>(mask, off + q * VEC, masked, v);
#pragma unroll
            for (int i = 0; i < VEC; ++i) {
                buf[i * packs + q] = v[i];
                m = nan_max(m, v[i]);
            }
        }
        m = block_max(m, scratch);
        any = block_or(any);
        A s = A(0);
        if (sd_finite(m)) {
            for (i64 q = threadIdx.x; q < packs; q += blockDim.x)
#pragma unroll
                for (int i = 0; i < VEC; ++i) s += sd_exp(buf[i * packs + q] - m);
        }
        s = block_sum(s, scratch);
        Row<A> r;
        r.m = m;
        r.s = s;
        r.any = any;
        const Norm<A> n = row_norm(r, masked);
        for (i64 q = threadIdx.x; q < packs; q += blockDim.x) {
            A o[VEC];
#pragma unroll
            for (int i = 0; i < VEC; ++i) {
                const int keep = !masked || mask[off + q * VEC + i];
                o[i] = norm_value(n, buf[i * packs + q], keep, log);
            }
            store<T, VEC>(y + off + q * VEC, o);
        }
    }
}

// ------------------------------------------------------------ forward: split rows
// Job j is chunk (j % splits) of row (j / splits): columns [part * chunk, min(cols,
// (part + 1) * chunk)); chunk % VEC == 0.
template <class T, int VEC>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_forward_partial(const T* __restrict__ x, const unsigned char* __restrict__ mask,
                                   typename Acc<T>::type* __restrict__ part_m,
                                   typename Acc<T>::type* __restrict__ part_s,
                                   int* __restrict__ part_any, i64 rows, i64 cols, i64 chunk,
                                   i64 splits, int masked) {
    typedef typename Acc<T>::type A;
    __shared__ Row<A> scratch[32];
    for (i64 job = blockIdx.x; job < rows * splits; job += gridDim.x) {
        const Chunk ch = chunk_of(job, cols, chunk, splits);
        const i64 begin = ch.begin, end = ch.end, off = ch.off;
        Row<A> r = row_empty<A>();
        for (i64 j = begin + (i64)threadIdx.x * VEC; j < end; j += (i64)blockDim.x * VEC) {
            A v[VEC];
            load<T, VEC>(x + off + j, v);
            r.any |= apply_mask<A, VEC>(mask, off + j, masked, v);
            r = row_add(r, v);
        }
        r = block_row(r, scratch);
        if (threadIdx.x == 0) {
            part_m[job] = r.m;
            part_s[job] = r.s;
            part_any[job] = r.any;
        }
    }
}

// The row's state from its partials, merged in chunk order (the same bits everywhere).
template <class A>
__device__ __forceinline__ Row<A> merged(const A* part_m, const A* part_s, const int* part_any,
                                         i64 row, i64 splits) {
    Row<A> r = row_empty<A>();
    for (i64 k = 0; k < splits; ++k) {
        Row<A> p;
        p.m = part_m[row * splits + k];
        p.s = part_s[row * splits + k];
        p.any = part_any[row * splits + k];
        r = row_merge(r, p);
    }
    return r;
}

template <class T, int VEC>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_forward_finish(const T* __restrict__ x, const unsigned char* __restrict__ mask,
                                  const typename Acc<T>::type* __restrict__ part_m,
                                  const typename Acc<T>::type* __restrict__ part_s,
                                  const int* __restrict__ part_any, T* __restrict__ y, i64 rows,
                                  i64 cols, i64 chunk, i64 splits, int masked, int log) {
    typedef typename Acc<T>::type A;
    for (i64 job = blockIdx.x; job < rows * splits; job += gridDim.x) {
        const Chunk ch = chunk_of(job, cols, chunk, splits);
        const i64 row = ch.row, begin = ch.begin, end = ch.end, off = ch.off;
        const Norm<A> n = row_norm(merged(part_m, part_s, part_any, row, splits), masked);
        for (i64 j = begin + (i64)threadIdx.x * VEC; j < end; j += (i64)blockDim.x * VEC) {
            A v[VEC];
            load<T, VEC>(x + off + j, v);
#pragma unroll
            for (int i = 0; i < VEC; ++i) v[i] = norm_value(n, v[i], !masked || mask[off + j + i], log);
            store<T, VEC>(y + off + j, v);
        }
    }
}

// ---------------------------------------------------------------- forward: column
// Softmax over the middle axis of a C-contiguous (outer, n, inner) array: a thread per
// (outer, inner) column, neighbouring threads on neighbouring columns (coalesced).
template <class T>
__global__ void sd_forward_column(const T* __restrict__ x, const unsigned char* __restrict__ mask,
                                  T* __restrict__ y, i64 outer, i64 n, i64 inner, int masked,
                                  int log) {
    typedef typename Acc<T>::type A;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x; c < outer * inner; c += step) {
        const i64 base = (c / inner) * n * inner + c % inner;
        Row<A> r = row_empty<A>();
        for (i64 j = 0; j < n; ++j) {
            A v[1] = {to_acc(x[base + j * inner])};
            r.any |= apply_mask<A, 1>(mask, base + j * inner, masked, v);
            r = row_add(r, v);
        }
        const Norm<A> nm = row_norm(r, masked);
        for (i64 j = 0; j < n; ++j) {
            const int keep = !masked || mask[base + j * inner];
            from_acc(norm_value(nm, to_acc(x[base + j * inner]), keep, log), &y[base + j * inner]);
        }
    }
}

// ------------------------------------------------------------------------ backward
// softmax:      dx = y * (g - sum(g * y)),    log_softmax: dx = g - exp(y) * sum(g),
// with g = 0 where masked (before the sum, as the written-once kernels do) and dx = 0
// where masked.
template <class A>
__device__ __forceinline__ A vjp_term(A g, A y, int log) { return log ? g : g * y; }

template <class A>
__device__ __forceinline__ A vjp_value(A g, A y, A total, int keep, int log) {
    if (!keep) return A(0);
    return log ? g - sd_exp(y) * total : y * (g - total);
}

template <class T, int VEC, int ITEMS, int WIDTH>
__global__ void sd_backward_warp(const T* __restrict__ grad, const T* __restrict__ yv,
                                 const unsigned char* __restrict__ mask, T* __restrict__ dx,
                                 i64 rows, i64 cols, int masked, int log) {
    typedef typename Acc<T>::type A;
    const WarpRows<WIDTH> w;
    const int sub = w.sub;
    for (i64 base = w.first; base < rows; base += w.stride) {  // the same trips for a warp
        const i64 row = base + w.group;
        const bool active = row < rows;
        const i64 off = row * cols;
        A g[ITEMS][VEC], y[ITEMS][VEC];
        A t = A(0);
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const i64 j = ((i64)k * WIDTH + sub) * VEC;
            if (active && j < cols) {
                load<T, VEC>(grad + off + j, g[k]);
                load<T, VEC>(yv + off + j, y[k]);
#pragma unroll
                for (int i = 0; i < VEC; ++i) {
                    if (masked && !mask[off + j + i]) g[k][i] = A(0);
                    t += vjp_term(g[k][i], y[k][i], log);
                }
            }
        }
        t = group_reduce<WIDTH>(t, Sum());
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const i64 j = ((i64)k * WIDTH + sub) * VEC;
            if (active && j < cols) {
                A o[VEC];
#pragma unroll
                for (int i = 0; i < VEC; ++i)
                    o[i] = vjp_value(g[k][i], y[k][i], t, !masked || mask[off + j + i], log);
                store<T, VEC>(dx + off + j, o);
            }
        }
    }
}

template <class T, int VEC>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_backward_partial(const T* __restrict__ grad, const T* __restrict__ yv,
                                    const unsigned char* __restrict__ mask,
                                    typename Acc<T>::type* __restrict__ part_t, i64 rows,
                                    i64 cols, i64 chunk, i64 splits, int masked, int log) {
    typedef typename Acc<T>::type A;
    __shared__ A scratch[32];
    for (i64 job = blockIdx.x; job < rows * splits; job += gridDim.x) {
        const Chunk ch = chunk_of(job, cols, chunk, splits);
        const i64 begin = ch.begin, end = ch.end, off = ch.off;
        A t = A(0);
        for (i64 j = begin + (i64)threadIdx.x * VEC; j < end; j += (i64)blockDim.x * VEC) {
            A g[VEC], y[VEC];
            load<T, VEC>(grad + off + j, g);
            load<T, VEC>(yv + off + j, y);
#pragma unroll
            for (int i = 0; i < VEC; ++i) {
                if (masked && !mask[off + j + i]) g[i] = A(0);
                t += vjp_term(g[i], y[i], log);
            }
        }
        t = block_sum(t, scratch);
        if (threadIdx.x == 0) part_t[job] = t;
    }
}

template <class T, int VEC>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_backward_finish(const T* __restrict__ grad, const T* __restrict__ yv,
                                   const unsigned char* __restrict__ mask,
                                   const typename Acc<T>::type* __restrict__ part_t,
                                   T* __restrict__ dx, i64 rows, i64 cols, i64 chunk, i64 splits,
                                   int masked, int log) {
    typedef typename Acc<T>::type A;
    for (i64 job = blockIdx.x; job < rows * splits; job += gridDim.x) {
        const Chunk ch = chunk_of(job, cols, chunk, splits);
        const i64 row = ch.row, begin = ch.begin, end = ch.end, off = ch.off;
        A t = A(0);
        for (i64 k = 0; k < splits; ++k) t += part_t[row * splits + k];
        for (i64 j = begin + (i64)threadIdx.x * VEC; j < end; j += (i64)blockDim.x * VEC) {
            A g[VEC], y[VEC], o[VEC];
            load<T, VEC>(grad + off + j, g);
            load<T, VEC>(yv + off + j, y);
#pragma unroll
            for (int i = 0; i < VEC; ++i) {
                const int keep = !masked || mask[off + j + i];
                o[i] = vjp_value(keep ? g[i] : A(0), y[i], t, keep, log);
            }
            store<T, VEC>(dx + off + j, o);
        }
    }
}

template <class T>
__global__ void sd_backward_column(const T* __restrict__ grad, const T* __restrict__ yv,
                                   const unsigned char* __restrict__ mask, T* __restrict__ dx,
                                   i64 outer, i64 n, i64 inner, int masked, int log) {
    typedef typename Acc<T>::type A;
    const i64 step = (i64)gridDim.x * blockDim.x;
    for (i64 c = (i64)blockIdx.x * blockDim.x + threadIdx.x; c < outer * inner; c += step) {
        const i64 base = (c / inner) * n * inner + c % inner;
        A t = A(0);
        for (i64 j = 0; j < n; ++j) {
            const i64 at = base + j * inner;
            const A g = (masked && !mask[at]) ? A(0) : to_acc(grad[at]);
            t += vjp_term(g, to_acc(yv[at]), log);
        }
        for (i64 j = 0; j < n; ++j) {
            const i64 at = base + j * inner;
            const int keep = !masked || mask[at];
            const A g = keep ? to_acc(grad[at]) : A(0);
            from_acc(vjp_value(g, to_acc(yv[at]), t, keep, log), &dx[at]);
        }
    }
}

// ------------------------------------------------------------------- cross-entropy
// Class indices, classes contiguous: logits (rows, C), target (rows,) int64. With
// a_c = (1 - eps) * w_t * [c == t] + eps / C * w_c (w = 1 without weights):
//   loss = -sum_c a_c * log_softmax(x)_c, terms with a_c == 0 exactly 0;
//   dx_c = scale * (softmax(x)_c * sum(a) - a_c), scale = the row's upstream gradient
//   (divided by the mean's denominator).
// An ignored sample's loss and gradient are 0 (its logits are not read); a class index
// outside [0, C) makes the sample's loss and gradient NaN (no host synchronisation).
__device__ __forceinline__ int ce_status(i64 t, i64 classes, int has_ignore, i64 ignore) {
    if (has_ignore && t == ignore) return 0;   // ignored
    return (t < 0 || t >= classes) ? 2 : 1;    // out of range : counted
}

// A sample's row statistics; with ONCHIP, its values also go to dynamic shared memory
// (value i of pack q at buf[i * packs + q], read back by the thread that wrote it).
template <class T, int VEC, bool ONCHIP>
__device__ __forceinline__ Norm<typename Acc<T>::type> ce_row(const T* x, i64 off, i64 classes,
                                                                Row<typename Acc<T>::type>* scratch,
                                                                typename Acc<T>::type* buf) {
    typedef typename Acc<T>::type A;
    const i64 packs = classes / VEC;
    Row<A> r = row_empty<A>();
    r.any = 1;
    for (i64 q = threadIdx.x; q < packs; q += blockDim.x) {
        A v[VEC];
        load<T, VEC>(x + off + q * VEC, v);
        if constexpr (ONCHIP) {
#pragma unroll
            for (int i = 0; i < VEC; ++i) buf[i * packs + q] = v[i];
        }
        r = row_add(r, v);
    }
    return row_norm(block_row(r, scratch), 0);
}

template <class T, int VEC>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_ce_forward(const T* __restrict__ x, const i64* __restrict__ target,
                              const typename Acc<T>::type* __restrict__ weight,
                              typename Acc<T>::type* __restrict__ loss, i64 rows, i64 classes,
                              int has_weight, int has_ignore, i64 ignore,
                              typename Acc<T>::type eps) {
    typedef typename Acc<T>::type A;
    __shared__ Row<A> scratch[32];
    __shared__ A sums[32];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const i64 t = target[row], off = row * classes;
        const int status = ce_status(t, classes, has_ignore, ignore);
        if (status != 1) {  // the same for the whole block
            if (threadIdx.x == 0) loss[row] = status == 0 ? A(0) : sd_nan(A());
            continue;
        }
        const Norm<A> n = ce_row<T, VEC, false>(x, off, classes, scratch, nullptr);
        const A coef = (A(1) - eps) * (has_weight ? weight[t] : A(1));
        A total = A(0);
        if (eps != A(0)) {  // the smoothing term reads the row a second time
            const A spread = eps / A(classes);
            for (i64 j = threadIdx.x; j < classes; j += blockDim.x) {
                const A a = spread * (has_weight ? weight[j] : A(1));
                if (a != A(0)) total += a * norm_value(n, to_acc(x[off + j]), 1, 1);
            }
            total = block_sum(total, sums);
        }
        if (threadIdx.x == 0) {
            const A picked = coef != A(0) ? coef * norm_value(n, to_acc(x[off + t]), 1, 1) : A(0);
            loss[row] = -(picked + total);
        }
    }
}

// ONCHIP: the sample's logits are read once, into shared memory (classes values of
// Acc<T>), and the gradient computed from there; otherwise they are read twice.
template <class T, int VEC, bool ONCHIP>
__global__ void __launch_bounds__(SD_MAX_BLOCK) sd_ce_backward(const T* __restrict__ x, const i64* __restrict__ target,
                               const typename Acc<T>::type* __restrict__ weight,
                               const typename Acc<T>::type* __restrict__ weight_sum,
                               const typename Acc<T>::type* __restrict__ scale,
                               const int* __restrict__ nothing_counted, T* __restrict__ dx, i64 rows, i64 classes, int has_weight,
                               int has_ignore, i64 ignore, typename Acc<T>::type eps) {
    typedef typename Acc<T>::type A;
    extern __shared__ __align__(16) unsigned char sd_smem[];
    A* buf = reinterpret_cast<A*>(sd_smem);
    __shared__ Row<A> scratch[32];
    const i64 packs = classes / VEC;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const i64 t = target[row], off = row * classes;
        const int status = ce_status(t, classes, has_ignore, ignore);
        // A row of one value: ignored (0), out of range (NaN), or reduction="mean" over no
        // counted weight (0, as the written-once kernels' safe division gives).
        if (status != 1 || *nothing_counted) {
            const A fill = status == 2 ? sd_nan(A()) : A(0);
            for (i64 j = (i64)threadIdx.x * VEC; j < classes; j += (i64)blockDim.x * VEC) {
                A o[VEC];
#pragma unroll
                for (int i = 0; i < VEC; ++i) o[i] = fill;
                store<T, VEC>(dx + off + j, o);
            }
            continue;
        }
        const Norm<A> n = ce_row<T, VEC, ONCHIP>(x, off, classes, scratch, buf);
        const A w_t = has_weight ? weight[t] : A(1);
        const A spread = eps / A(classes);
        const A total = (A(1) - eps) * w_t + spread * (has_weight ? *weight_sum : A(classes));
        const A sc = scale[row];
        for (i64 q = threadIdx.x; q < packs; q += blockDim.x) {
            const i64 j = q * VEC;
            A v[VEC];
            if constexpr (ONCHIP) {
#pragma unroll
                for (int i = 0; i < VEC; ++i) v[i] = buf[i * packs + q];
            } else {
                load<T, VEC>(x + off + j, v);
            }
#pragma unroll
            for (int i = 0; i < VEC; ++i) {
                const i64 c = j + i;
                const A a = (c == t ? (A(1) - eps) * w_t : A(0)) +
                            spread * (has_weight ? weight[c] : A(1));
                v[i] = sc * (norm_value(n, v[i], 1, 0) * total - a);
            }
            store<T, VEC>(dx + off + j, v);
        }
    }
}

#endif
