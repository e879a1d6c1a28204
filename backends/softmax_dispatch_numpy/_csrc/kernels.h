// softmax-dispatch: what the compiled NumPy kernels take, and the table of them that each
// instruction set provides (kernels.cpp compiled once per set; module.cpp picks one at
// run time from what the CPU has).
//
// Every array is seen as a (P, N, Q) view: N along the softmax (or class) axis, P the
// axes before it, Q the axes after it, with strides in elements of the array's own type.
// The "rows" kernels need unit stride along N (vectors run along a row); the "columns"
// kernels need unit stride along Q (vectors run across Q neighbouring columns). Work is
// cut into units: a rows unit is one line (p, q), u = p * Q + q; a columns unit is a slab
// (or, for cross-entropy, a tile) of neighbouring columns of one p, u = p * ceil(Q / w) + t. A call computes units
// [u0, u1); callers share units among threads, and a unit's result never depends on
// which other units run, or where.
#pragma once

#include <cstdint>

namespace sd {

enum Dtype : int { F16 = 0, F32 = 1, F64 = 2 };

// The columns kernels of softmax and log_softmax (and their backward passes) work on
// slabs of this many bytes of compute values (float32 for float16) per row segment;
// cross-entropy's columns kernel on tiles of Table::tile_vectors vectors.
constexpr int64_t SLAB_BYTES = 2048;
inline int64_t slab_lanes(int dtype) { return SLAB_BYTES / (dtype == F64 ? 8 : 4); }

struct Strides {
    int64_t p, n, q;
};

struct View {
    const void* data;
    Strides s;
};

// softmax / log_softmax forward (a = x), and their backward passes (a = grad, b = y).
struct NormArgs {
    int64_t P, N, Q;
    View a, b;
    void* out;
    Strides so;
    const uint8_t* mask;  // nullptr, or a boolean mask; stride along the vector axis 0 or 1
    Strides sm;
    int dtype;
    bool log;
    bool stream;  // the output is large: stored past the cache
};

// softmax cross-entropy over the class axis N (C classes), one sample per (p, q).
struct CEArgs {
    int64_t P, C, Q;
    View x;
    // class-index target (index_target): int64, strides (tp, tq); else probabilities,
    // the logits' dtype and shape
    bool index_target;
    const int64_t* t;
    int64_t tp, tq;
    View prob;
    const void* weight;  // nullptr, or C weights in the compute dtype (float, or double)
    double eps;          // label smoothing
    bool has_ignore;
    int64_t ignore;
    double wtotal;       // the sum of the weights (C without weights)
    void* loss;          // per-sample losses in the compute dtype (p * Q + q); nullptr: only
                         // the summed weight is computed
    void* dx;            // nullptr, or the gradient, strides sdx
    Strides sdx;
    const double* scale; // per-sample gradient scale (index p * Q + q), or nullptr
    double scale1;       // the scale of every sample where `scale` is nullptr
    int dtype;
};

struct Table {
    const char* name;
    int vector_bytes;
    int tile_vectors;  // a columns tile is this many vectors of neighbouring columns
    // false: out of memory (a float32 scratch row for float16)
    bool (*forward_rows)(const NormArgs&, int64_t u0, int64_t u1);
    bool (*forward_cols)(const NormArgs&, int64_t u0, int64_t u1);
    bool (*backward_rows)(const NormArgs&, int64_t u0, int64_t u1);
    bool (*backward_cols)(const NormArgs&, int64_t u0, int64_t u1);
    // the summed weight of the counted samples (the "mean" denominator); *ok false: out
    // of memory
    double (*ce_rows)(const CEArgs&, int64_t u0, int64_t u1, bool* ok);
    double (*ce_cols)(const CEArgs&, int64_t u0, int64_t u1, bool* ok);
    void (*exp_f32)(const float*, float*, int64_t);
    void (*exp_f64)(const double*, double*, int64_t);
    void (*half_to_float)(const uint16_t*, float*, int64_t);
    void (*float_to_half)(const float*, uint16_t*, int64_t);
};

}  // namespace sd

// The tables, one per instruction set this build compiled (module.cpp lists them).
#define SD_DECLARE_TABLE(isa) \
    namespace isa {            \
    extern const sd::Table table; \
    }
