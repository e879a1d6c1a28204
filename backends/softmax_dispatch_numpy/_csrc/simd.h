// softmax-dispatch: the vector helpers every compiled NumPy kernel is written with.
//
// One source, compiled once per instruction set: kernels.cpp includes this header with
// SD_ISA (the namespace, e.g. isa_avx2) and SD_VBYTES (the vector width in bytes: 64 for
// AVX-512, 32 for AVX2, 16 for SSE2 and NEON) defined by the build, and with the
// compiler flags of that instruction set (-mavx2 -mfma -mf16c, ...). The arithmetic is
// written with GCC/Clang vector extensions, so the same lines become AVX-512, AVX2, SSE2
// or NEON instructions; only the float16 conversions use intrinsics (F16C, AVX-512F,
// NEON), with an exact integer fallback where the CPU has none.
//
// Everything here is in the per-ISA namespace: the same inline function compiled with
// different flags must never be merged by the linker (the AVX-512 copy would run on a CPU
// without AVX-512).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>
#endif

#if !defined(SD_ISA) || !defined(SD_VBYTES)
#error "SD_ISA and SD_VBYTES must be defined by the build (see CMakeLists.txt)"
#endif

// Hot helpers inlined whatever the compiler's size estimate (a call per vector costs
// more than the exp it would save code for).
#define SD_INLINE inline __attribute__((always_inline))

namespace SD_ISA {

constexpr int VB = SD_VBYTES;
constexpr int NF = VB / 4;  // float lanes
constexpr int ND = VB / 8;  // double lanes

typedef float vf __attribute__((vector_size(VB)));
typedef double vd __attribute__((vector_size(VB)));
typedef int32_t vi __attribute__((vector_size(VB)));
typedef uint32_t vu __attribute__((vector_size(VB)));
typedef int64_t vl __attribute__((vector_size(VB)));
typedef uint64_t vq __attribute__((vector_size(VB)));
typedef float vf_half __attribute__((vector_size(VB / 2)));  // half a vf: widens to a vd
typedef uint16_t vh __attribute__((vector_size(VB / 2)));    // NF float16 values

template <class To, class From>
inline To bits(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between equal sizes only");
    To t;
    std::memcpy(&t, &v, sizeof t);
    return t;
}

// ------------------------------------------------------------------ per-type traits
// V<T>: the vector of compute values for storage type T (float16 is computed in float).
struct half_t {
    uint16_t bits;
};

template <class T> struct Traits;
template <> struct Traits<float> {
    typedef float scalar;
    typedef vf vec;
    typedef vi mask;  // lane masks (all ones or zero), and integer lanes of the same width
    typedef int32_t index;
    static constexpr int lanes = NF;
};
template <> struct Traits<half_t> : Traits<float> {};
template <> struct Traits<double> {
    typedef double scalar;
    typedef vd vec;
    typedef vl mask;
    typedef int64_t index;
    static constexpr int lanes = ND;
};

inline vf splat(float s) { return vf{} + s; }
inline vd splat(double s) { return vd{} + s; }

// ------------------------------------------------------------------ float16 <-> float32
// Exact conversions of NF values; float32 -> float16 rounds to nearest, ties to even,
// with subnormals, infinities and NaN (a NaN stays a NaN), as the hardware does.
inline vf half_to_float_soft(vh h) {
    vu u = __builtin_convertvector(h, vu);
    vu sign = (u & 0x8000u) << 16;
    vu em = u & 0x7fffu;
    // normals and subnormals: the bits shifted into place, scaled by 2**112 (exact)
    vf f = bits<vf>(em << 13) * splat(0x1p112f);
    vu fb = bits<vu>(f);
    fb = (em >= 0x7c00u) ? ((em << 13) | 0x7f800000u) : fb;  // inf, NaN
    return bits<vf>(fb | sign);
}

inline vh float_to_half_soft(vf f) {
    vu u = bits<vu>(f);
    vu sign = (u >> 16) & 0x8000u;
    vu a = u & 0x7fffffffu;
    // normal results: rebias the exponent, round half to even on the 13 dropped bits
    vu normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;  // 0xc8000fff: (15-127)<<23 + 0xfff
    // subnormal results: adding 0.5 makes the FPU round at float16's subnormal step
    vu sub = bits<vu>(bits<vf>(a) + splat(0.5f)) - 0x3f000000u;
    vu r = (a < 0x38800000u) ? sub : normal;  // below 2**-14: subnormal
    r = (a >= 0x47800000u) ? vu{} + 0x7c00u : r;  // at or above 65536 after rounding: inf
    r = (a > 0x7f800000u) ? vu{} + 0x7e00u : r;   // NaN
    return __builtin_convertvector(r | sign, vh);
}

inline vf load_half(const half_t* p) {
    vh h;
    std::memcpy(&h, p, sizeof h);
#if defined(__AVX512F__) && SD_VBYTES == 64
    return bits<vf>(_mm512_maskz_cvtph_ps((__mmask16)-1, bits<__m256i>(h)));  // (maskz: no GCC 12 warning)
#elif defined(__F16C__) && SD_VBYTES == 32
    return bits<vf>(_mm256_cvtph_ps(bits<__m128i>(h)));
#elif (defined(__aarch64__) || defined(_M_ARM64)) && SD_VBYTES == 16
    return bits<vf>(vcvt_f32_f16(vreinterpret_f16_u16(bits<uint16x4_t>(h))));
#else
    return half_to_float_soft(h);
#endif
}

inline void store_half(half_t* p, vf v) {
    vh h;
#if defined(__AVX512F__) && SD_VBYTES == 64
    h = bits<vh>(_mm512_maskz_cvtps_ph((__mmask16)-1, bits<__m512>(v), _MM_FROUND_TO_NEAREST_INT));
#elif defined(__F16C__) && SD_VBYTES == 32
    h = bits<vh>(_mm256_cvtps_ph(bits<__m256>(v), _MM_FROUND_TO_NEAREST_INT));
#elif (defined(__aarch64__) || defined(_M_ARM64)) && SD_VBYTES == 16
    h = bits<vh>(vreinterpret_u16_f16(vcvt_f16_f32(bits<float32x4_t>(v))));
#else
    h = float_to_half_soft(v);
#endif
    std::memcpy(p, &h, sizeof h);
}

// ------------------------------------------------------------------ loads and stores
// Full vectors at any alignment, partial vectors (the first k lanes) padded with `fill`.
inline vf load(const float* p) {
    vf v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline vd load(const double* p) {
    vd v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline vf load(const half_t* p) { return load_half(p); }

inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline void store(double* p, vd v) { std::memcpy(p, &v, sizeof v); }
inline void store(half_t* p, vf v) { store_half(p, v); }

// Stores that bypass the cache (the line is not read first), where the address is
// aligned; a plain store elsewhere. `fence()` before the stored values are shared.
inline void store_stream(float* p, vf v) {
#if defined(__AVX512F__) && SD_VBYTES == 64
    if (((uintptr_t)p & 63) == 0) return _mm512_stream_ps(p, bits<__m512>(v));
#elif defined(__AVX__) && SD_VBYTES == 32
    if (((uintptr_t)p & 31) == 0) return _mm256_stream_ps(p, bits<__m256>(v));
#elif defined(__SSE2__) && SD_VBYTES == 16
    if (((uintptr_t)p & 15) == 0) return _mm_stream_ps(p, bits<__m128>(v));
#endif
    store(p, v);
}
inline void store_stream(double* p, vd v) {
#if defined(__AVX512F__) && SD_VBYTES == 64
    if (((uintptr_t)p & 63) == 0) return _mm512_stream_pd(p, bits<__m512d>(v));
#elif defined(__AVX__) && SD_VBYTES == 32
    if (((uintptr_t)p & 31) == 0) return _mm256_stream_pd(p, bits<__m256d>(v));
#elif defined(__SSE2__) && SD_VBYTES == 16
    if (((uintptr_t)p & 15) == 0) return _mm_stream_pd(p, bits<__m128d>(v));
#endif
    store(p, v);
}
inline void store_stream(half_t* p, vf v) { store(p, v); }  // (half as wide: plain stores)
inline void fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

template <class T>
inline typename Traits<T>::vec load_part(const T* p, int64_t k, typename Traits<T>::scalar fill) {
    T buf[Traits<T>::lanes];
    std::memcpy(buf, p, (size_t)k * sizeof(T));
    typename Traits<T>::vec v = load(buf);
    for (int64_t i = k; i < Traits<T>::lanes; ++i) v[i] = fill;
    return v;
}

template <class T>
inline void store_part(T* p, typename Traits<T>::vec v, int64_t k) {
    T buf[Traits<T>::lanes];
    store(buf, v);
    std::memcpy(p, buf, (size_t)k * sizeof(T));
}

// ------------------------------------------------------------------ reductions
inline float hmin(vf v) {
    float m = v[0];
    for (int i = 1; i < NF; ++i) m = v[i] < m ? v[i] : m;
    return m;
}
inline double hmin(vd v) {
    double m = v[0];
    for (int i = 1; i < ND; ++i) m = v[i] < m ? v[i] : m;
    return m;
}
inline float hmax(vf v) {
    float m = v[0];
    for (int i = 1; i < NF; ++i) m = v[i] > m ? v[i] : m;
    return m;
}
inline double hmax(vd v) {
    double m = v[0];
    for (int i = 1; i < ND; ++i) m = v[i] > m ? v[i] : m;
    return m;
}
// Lane sums in a fixed order (pairwise over the lanes): a row's sum never depends on
// where the row lies in memory or how many rows there are.
inline double hsum(vd v) {
    double t[ND];
    std::memcpy(t, &v, sizeof t);
    for (int w = ND / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) t[i] += t[i + w];
    return t[0];
}

// float lanes widened to two double vectors (lanes 0..ND-1 and ND..NF-1).
inline void widen(vf v, vd& lo, vd& hi) {
    vf_half a, b;
    std::memcpy(&a, &v, sizeof a);
    std::memcpy(&b, reinterpret_cast<const char*>(&v) + sizeof a, sizeof b);
    lo = __builtin_convertvector(a, vd);
    hi = __builtin_convertvector(b, vd);
}

inline vf max(vf a, vf b) { return b > a ? b : a; }  // NaN in b: a (the sum carries NaN)
inline vd max(vd a, vd b) { return b > a ? b : a; }

// ------------------------------------------------------------------ exp
// Whether any lane of a mask is set (movemask where the ISA has it).
inline bool any(vi m) {
#if defined(__AVX512F__) && SD_VBYTES == 64
    return _mm512_test_epi32_mask(bits<__m512i>(m), bits<__m512i>(m)) != 0;
#elif defined(__AVX__) && SD_VBYTES == 32
    return _mm256_movemask_ps(bits<__m256>(m)) != 0;
#elif defined(__SSE2__) && SD_VBYTES == 16
    return _mm_movemask_ps(bits<__m128>(m)) != 0;
#else
    uint32_t o = 0;
    for (int i = 0; i < NF; ++i) o |= (uint32_t)m[i];
    return o != 0;
#endif
}
inline bool any(vl m) { return any(bits<vi>(m)); }

// exp(x) for every float32 x. Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2; a
// degree-6 polynomial 1 + r + r^2 q(r) for exp(r) (q fitted to the relative error on
// that interval by iteratively reweighted least squares: 3.6e-9, 0.06 ulp, with its
// coefficients in float32); then 2**n added to the exponent field. A vector with a lane
// outside the range where that is exact (x below about -86.6: a subnormal or zero
// result; above 88.3: near the overflow; NaN, +-inf) takes exp_wide instead: inputs
// clamped to [-104, 89] (below, the result rounds to 0; above, it overflows to inf; NaN
// stays NaN) and 2**n applied as two exact powers of two, so that subnormal results
// round once. The check comes first, so the common vector skips the clamps.
// Error: at most 1.01 ulp over every float32 input with FMA, checked exhaustively
// against float64 (tests/test_native.py; the measured maxima are in docs/numerics.md).
SD_INLINE vf exp_poly(vf x, vf t, vf magic) {
    vf n = t - magic;
    vf r = x - n * splat(0.693359375f);
    r = r - n * splat(-2.12194440e-4f);
    vf p = splat(1.3814539415761828e-3f);
    p = p * r + splat(8.36874544620514e-3f);
    p = p * r + splat(4.166838899254799e-2f);
    p = p * r + splat(1.666652113199234e-1f);
    p = p * r + splat(4.999999403953552e-1f);
    p = p * r + splat(1.0f);
    return p * r + splat(1.0f);
}

__attribute__((noinline, cold)) inline vf exp_wide(vf x) {
    const vf magic = splat(0x1.8p23f);
    x = x < splat(-104.0f) ? splat(-104.0f) : x;
    x = x > splat(89.0f) ? splat(89.0f) : x;
    vf t = x * splat(1.44269504088896341f) + magic;
    vf p = exp_poly(x, t, magic);
    vu nb = bits<vu>(t) - 0x4b400000u + 256u;  // n in [-150, 128]: two halves in [-75, 64]
    vu n1 = (nb >> 1) - 128u;
    vu n2 = nb - 256u - n1;
    return (p * bits<vf>((n1 + 127u) << 23)) * bits<vf>((n2 + 127u) << 23);
}

// exp(x) for x known to be in [-86, 88] (no NaN): the check skipped, for rows whose
// range the kernel has checked once (the same result as exp wherever it applies).
SD_INLINE vf exp_in_range(vf x) {
    const vf magic = splat(0x1.8p23f);
    vf t = x * splat(1.44269504088896341f) + magic;
    vi ni = bits<vi>(t) - 0x4b400000;
    return bits<vf>(bits<vu>(exp_poly(x, t, magic)) + (bits<vu>(ni) << 23));
}

SD_INLINE vf exp(vf x) {
    const vf magic = splat(0x1.8p23f);  // 1.5 * 2**23: adding it rounds to an integer
    vf t = x * splat(1.44269504088896341f) + magic;
    vi ni = bits<vi>(t) - 0x4b400000;  // n, from the rounded sum's low bits (NaN: out)
    if (__builtin_expect(any((ni < -125) | (ni > 127)), 0)) return exp_wide(x);
    return bits<vf>(bits<vu>(exp_poly(x, t, magic)) + (bits<vu>(ni) << 23));
}

// exp(x) for every float64 x: the same reduction, a degree-11 polynomial (q fitted by
// mpmath's Chebyshev interpolation: relative error 1.3e-17, 0.11 ulp), the same
// scaling; exp_wide clamps to [-750, 710]. Error: within 1 ulp on the float64 samples
// the tests check against long double.
SD_INLINE vd exp_poly(vd x, vd t, vd magic) {
    vd n = t - magic;
    vd r = x - n * splat(6.93147180369123816490e-01);
    r = r - n * splat(1.90821492927058770002e-10);
    vd p = splat(2.5100472505694996e-08);
    p = p * r + splat(2.7620201591031547e-07);
    p = p * r + splat(2.7557268276905696e-06);
    p = p * r + splat(2.4801521057868204e-05);
    p = p * r + splat(1.9841269863171557e-04);
    p = p * r + splat(1.3888888917367081e-03);
    p = p * r + splat(8.3333333333300390e-03);
    p = p * r + splat(4.1666666666623824e-02);
    p = p * r + splat(1.6666666666666669e-01);
    p = p * r + splat(5.0000000000000010e-01);
    p = p * r + splat(1.0);
    return p * r + splat(1.0);
}

__attribute__((noinline, cold)) inline vd exp_wide(vd x) {
    const vd magic = splat(0x1.8p52);
    x = x < splat(-750.0) ? splat(-750.0) : x;
    x = x > splat(710.0) ? splat(710.0) : x;
    vd t = x * splat(1.4426950408889634074) + magic;
    vd p = exp_poly(x, t, magic);
    vq nb = bits<vq>(t) - 0x4338000000000000ull + 2048u;  // n in [-1082, 1025]
    vq n1 = (nb >> 1) - 1024u;
    vq n2 = nb - 2048u - n1;
    return (p * bits<vd>((n1 + 1023u) << 52)) * bits<vd>((n2 + 1023u) << 52);
}

SD_INLINE vd exp_in_range(vd x) {  // x in [-707, 709], no NaN
    const vd magic = splat(0x1.8p52);
    vd t = x * splat(1.4426950408889634074) + magic;
    vl ni = bits<vl>(t) - 0x4338000000000000ll;
    return bits<vd>(bits<vq>(exp_poly(x, t, magic)) + (bits<vq>(ni) << 52));
}
// The range where exp_in_range is exp.
inline float exp_lo(float) { return -86.0f; }
inline float exp_hi(float) { return 88.0f; }
inline double exp_lo(double) { return -707.0; }
inline double exp_hi(double) { return 709.0; }

SD_INLINE vd exp(vd x) {
    const vd magic = splat(0x1.8p52);
    vd t = x * splat(1.4426950408889634074) + magic;
    vl ni = bits<vl>(t) - 0x4338000000000000ll;
    if (__builtin_expect(any((ni < -1021) | (ni > 1023)), 0)) return exp_wide(x);
    return bits<vd>(bits<vq>(exp_poly(x, t, magic)) + (bits<vq>(ni) << 52));
}

}  // namespace SD_ISA
