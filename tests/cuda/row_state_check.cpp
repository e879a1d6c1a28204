// Host build of the row-state arithmetic in backends/softmax_dispatch_cupy/cuda/softmax.cu
// (the part every CUDA kernel folds, merges and normalises rows with), driven by
// tests/test_cupy_kernels.py, which compares its output with NumPy.
//
// stdin, per case: "<f|d> <masked> <n> <k>", n values, n mask flags (0/1), k cut points
// (0 < c < n, increasing). The row is cut at the points into chunks, each chunk folded
// element by element (row_add with N = 1) and, separately, in pairs (N = 2); the chunks'
// states are merged left to right and, separately, as a balanced tree (as the warp and
// block reductions do). stdout, per case: n softmax values, then n log_softmax values,
// from each of the two merges ("%.17g"; nan, inf, -inf).
#define SD_HOST_ONLY
#include "../../backends/softmax_dispatch_cupy/cuda/softmax.cu"

#include <cstdio>
#include <cstdlib>
#include <vector>

template <class A> static Row<A> fold(const std::vector<A>& v, size_t b, size_t e, bool pairs) {
    Row<A> r = row_empty<A>();
    size_t i = b;
    if (pairs) {
        for (; i + 1 < e; i += 2) {
            const A two[2] = {v[i], v[i + 1]};
            r = row_add(r, two);
        }
    }
    for (; i < e; ++i) {
        const A one[1] = {v[i]};
        r = row_add(r, one);
    }
    return r;
}

template <class A> static Row<A> tree(const std::vector<Row<A>>& parts, size_t b, size_t e) {
    if (e - b == 1) return parts[b];
    const size_t mid = b + (e - b) / 2;
    return row_merge(tree(parts, b, mid), tree(parts, mid, e));
}

template <class A> static void run(int masked, size_t n, size_t k) {
    std::vector<A> v(n);
    std::vector<int> keep(n);
    std::vector<size_t> cuts{0};
    char word[64];
    for (size_t i = 0; i < n; ++i) {
        if (scanf("%63s", word) != 1) exit(2);
        v[i] = A(strtod(word, nullptr));
    }
    for (size_t i = 0; i < n; ++i)
        if (scanf("%d", &keep[i]) != 1) exit(2);
    for (size_t i = 0; i < k; ++i) {
        size_t c;
        if (scanf("%zu", &c) != 1) exit(2);
        cuts.push_back(c);
    }
    cuts.push_back(n);
    std::vector<A> x(v);
    for (size_t i = 0; i < n; ++i)
        if (masked && !keep[i]) x[i] = -sd_inf(A());
    for (int order = 0; order < 2; ++order) {
        std::vector<Row<A>> parts;
        for (size_t c = 0; c + 1 < cuts.size(); ++c) {
            Row<A> p = fold(x, cuts[c], cuts[c + 1], c % 2 == 1);
            p.any = 0;
            for (size_t i = cuts[c]; i < cuts[c + 1]; ++i) p.any |= !masked || keep[i];
            parts.push_back(p);
        }
        Row<A> r = row_empty<A>();
        if (order == 0) {
            for (const Row<A>& p : parts) r = row_merge(r, p);
        } else {
            r = tree(parts, 0, parts.size());
        }
        const Norm<A> nm = row_norm(r, masked);
        for (int log = 0; log < 2; ++log)
            for (size_t i = 0; i < n; ++i) printf("%.17g\n", double(norm_value(nm, x[i], !masked || keep[i], log)));
    }
}

int main() {
    char kind[8];
    int masked;
    size_t n, k;
    while (scanf("%7s %d %zu %zu", kind, &masked, &n, &k) == 4) {
        if (kind[0] == 'f') run<float>(masked, n, k);
        else run<double>(masked, n, k);
    }
    return 0;
}
