// The kernels, written once and compiled once per instruction set (see kernels.hpp).
//
// Included by kernels_isa.cpp with these macros defined:
//   FASTGD_ISA         namespace name of this build (baseline, avx2, avx512)
//   FASTGD_VEC_BYTES   width of one SIMD register in bytes (16, 32, 64)
//   FASTGD_ROW_BLOCK   rows of a mini-batch processed together (register blocking)
//   FASTGD_UNROLL      weight rows updated together in the rank-update kernel
//
// Everything below has internal linkage except the two Kernels tables at the end: several
// builds of the same code, with different instruction sets, live in one shared library, so no
// inline or template function may be shared between them (the linker would keep one copy,
// possibly one this CPU cannot run). For the same reason this file uses no standard-library
// templates, only C functions and compiler builtins.
//
// Strategy. The network's parameters are copied into a padded ("packed") copy in which every
// layer's width is rounded up to 64 bytes, so vector code never needs a tail. A mini-batch is
// processed in blocks of up to FASTGD_ROW_BLOCK rows; within a block the kernels keep one
// accumulator register per row and per 64-byte chunk of a layer's outputs (the hidden units lie
// along the vector lanes), so the 784-wide first layer streams its weights once for the whole
// block. For plain SGD with a mini-batch that fits in one block, the weight update is fused into
// the weight-gradient pass: W += X^T (-eta/m * delta), without ever forming the gradient.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels.hpp"

#ifndef FASTGD_ISA
#error "FASTGD_ISA must be defined"
#endif

namespace fastgd {
namespace FASTGD_ISA {
namespace {

constexpr int kRowBlock = FASTGD_ROW_BLOCK;
constexpr int kUnroll = FASTGD_UNROLL;
constexpr int64_t kPadBytes = 64;
// Rows between two calls of the stop callback in a training epoch (a few milliseconds of work).
constexpr int64_t kRowsBetweenStopChecks = 8192;
// After a mini-batch of m rows of a training epoch (more: rows are left): whether the stop callback,
// called about every kRowsBetweenStopChecks rows, asks to stop.
inline bool stop_requested(StopFn stop, void* ctx, int64_t* rows_since_check, int64_t m, bool more) {
    *rows_since_check += m;
    if (!stop || !more || *rows_since_check < kRowsBetweenStopChecks) return false;
    *rows_since_check = 0;
    return stop(ctx);
}
#ifndef FASTGD_PREFETCH_LOCALITY
#define FASTGD_PREFETCH_LOCALITY 2
#endif

template <class T>
struct VecOf;
template <>
struct VecOf<float> {
    typedef float type __attribute__((vector_size(FASTGD_VEC_BYTES)));
};
template <>
struct VecOf<double> {
    typedef double type __attribute__((vector_size(FASTGD_VEC_BYTES)));
};
template <class T>
using vec = typename VecOf<T>::type;
template <class T>
constexpr int64_t kLanes = FASTGD_VEC_BYTES / static_cast<int64_t>(sizeof(T));
template <class T>
constexpr int64_t kPad = kPadBytes / static_cast<int64_t>(sizeof(T));

template <class T>
inline vec<T> vload(const T* p) {
    vec<T> v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
template <class T>
inline void vstore(T* p, const vec<T>& v) {
    __builtin_memcpy(p, &v, sizeof v);
}
inline float xexp(float x) { return __builtin_expf(x); }
inline double xexp(double x) { return __builtin_exp(x); }
inline float xlog(float x) { return __builtin_logf(x); }
inline double xlog(double x) { return __builtin_log(x); }
inline float xlog1p(float x) { return __builtin_log1pf(x); }
inline double xlog1p(double x) { return __builtin_log1p(x); }

// softplus(x) = ln(1 + e^x), stable for large |x|.
template <class T>
inline T softplus(T x) {
    return (x > 0 ? x : T(0)) + xlog1p(xexp(x > 0 ? -x : x));
}
// ---------------------------------------------------------------------------------------------
// Vectorised exp and sigmoid (one 64-byte chunk at a time), so that activations cost a few
// instructions per unit instead of a libm call each.
//
// exp(x) = 2^n exp(r) with n = round(x / ln 2) and |r| <= ln(2)/2: float uses a degree-6
// polynomial (Cephes expf, within 2 ulp), double the Cephes rational approximation (within
// 2e-16 relative). Arguments are clamped to the range where the result is normal.

template <class T>
struct IntOf;
template <>
struct IntOf<float> {
    typedef int32_t type __attribute__((vector_size(FASTGD_VEC_BYTES)));
    static constexpr int32_t bias = 127;
    static constexpr int mantissa = 23;
    static constexpr float lo = -87.0f, hi = 88.0f;
};
template <>
struct IntOf<double> {
    typedef int64_t type __attribute__((vector_size(FASTGD_VEC_BYTES)));
    static constexpr int64_t bias = 1023;
    static constexpr int mantissa = 52;
    static constexpr double lo = -708.0, hi = 709.0;
};

inline vec<float> exp_poly(const vec<float>& r) {
    vec<float> p = vec<float>{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * (r * r) + r + 1.0f;
}
inline vec<double> exp_poly(const vec<double>& r) {
    const vec<double> r2 = r * r;
    const vec<double> px = r * ((r2 * 1.26177193074810590878e-4 + 3.02994407707441961300e-2) * r2 +
                                9.99999999999999999910e-1);
    const vec<double> qx =
        ((r2 * 3.00198505138664455042e-6 + 2.52448340349684104192e-3) * r2 + 2.27265548208155028766e-1) * r2 +
        2.00000000000000000009e0;
    return 2.0 * px / (qx - px) + 1.0;
}

template <class T>
inline vec<T> vexp(vec<T> x) {
    typedef typename IntOf<T>::type ivec;
    x = x < IntOf<T>::lo ? vec<T>{} + IntOf<T>::lo : x;
    x = x > IntOf<T>::hi ? vec<T>{} + IntOf<T>::hi : x;
    // n = round(x / ln 2) by the add-and-subtract trick: adding 1.5 * 2^mantissa leaves n in the
    // low bits of the sum's representation.
    const T magic = T(1.5) * static_cast<T>(int64_t(1) << IntOf<T>::mantissa);
    const vec<T> t = x * T(1.44269504088896340736) + magic;
    const vec<T> n = t - magic;
    const vec<T> r = (x - n * T(0.693145751953125)) - n * T(1.42860682030941723212e-6);
    const ivec ni = (ivec)t - (ivec)(vec<T>{} + magic);
    const ivec scale = (ni + IntOf<T>::bias) << IntOf<T>::mantissa;
    return exp_poly(r) * (vec<T>)scale;
}

template <class T>
inline vec<T> vsigmoid(const vec<T>& z) {
    const vec<T> e = vexp<T>(z < 0 ? z : -z);  // e^-|z| in (0, 1]
    const vec<T> s = T(1) / (e + T(1));
    return z >= 0 ? s : e * s;
}

// tanh: an odd polynomial (float) or rational function (double) for |z| < 0.625, where
// 1 - 2/(e^2|z| + 1) would lose precision to cancellation, and that formula elsewhere (Cephes).
inline vec<float> tanh_small(const vec<float>& x) {
    const vec<float> z = x * x;
    vec<float> p = vec<float>{} - 5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    return p * z * x + x;
}
inline vec<double> tanh_small(const vec<double>& x) {
    const vec<double> z = x * x;
    const vec<double> p = (z * -9.64399179425052238628e-1 - 9.92877231001918586564e1) * z - 1.61468768441708447952e3;
    const vec<double> q =
        ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3;
    return x + x * z * (p / q);
}
template <class T>
inline vec<T> vtanh(const vec<T>& z) {
    const vec<T> az = z < 0 ? -z : z;
    const vec<T> big = T(1) - T(2) / (vexp<T>(az + az) + T(1));
    const vec<T> large = z < 0 ? -big : big;
    return az < T(0.625) ? tanh_small(z) : large;
}

// A lane of IntOf<T>::type.
template <class T>
using lane_t = std::remove_cv_t<decltype(IntOf<T>::bias)>;
// 0, 1, ..., kLanes - 1: a vector's lane numbers, to select lanes by column.
template <class T>
inline typename IntOf<T>::type lane_index() {
    typename IntOf<T>::type v;
    for (int64_t i = 0; i < kLanes<T>; ++i) v[i] = static_cast<lane_t<T>>(i);
    return v;
}

inline int64_t round_up(int64_t n, int64_t to) { return (n + to - 1) / to * to; }
template <class T>
inline int64_t lines_per_row(int64_t n) {
    return (n * static_cast<int64_t>(sizeof(T)) + 63) / 64 + 1;  // + 1: a row need not start a line
}

// ---------------------------------------------------------------------------------------------
// The network as the kernels see it: padded widths and offsets into the packed parameters.
// ld[l] is the padded width of layer l's activations (ld[0] = sizes[0]: inputs are not copied
// column-padded). Layer l's packed weights are sizes[l] rows of ld[l+1], then ld[l+1] biases.
constexpr int kMaxLayersOnStack = 32;

struct Net {
    int L = 0;
    const int64_t* n = nullptr;
    int act = 0, cost = 0;
    int64_t* ld = nullptr;
    int64_t* woff = nullptr;  // packed offsets
    int64_t* boff = nullptr;
    int64_t* toff = nullptr;  // offsets in the public theta layout
    int64_t packed = 0;       // packed parameter count
    int64_t max_ld = 0;
    int64_t storage_[4 * (kMaxLayersOnStack + 1)];
    int64_t* heap_ = nullptr;

    template <class T>
    bool init(const Model& m) {
        L = m.n_layers;
        n = m.sizes;
        act = m.activation;
        cost = m.cost;
        int64_t* p = storage_;
        if (L > kMaxLayersOnStack) {
            heap_ = static_cast<int64_t*>(std::malloc(sizeof(int64_t) * 4 * static_cast<size_t>(L + 1)));
            if (!heap_) return false;
            p = heap_;
        }
        ld = p;
        woff = p + (L + 1);
        boff = p + 2 * (L + 1);
        toff = p + 3 * (L + 1);
        ld[0] = n[0];
        max_ld = 0;
        int64_t off = 0, toffset = 0;
        for (int l = 0; l < L; ++l) {
            ld[l + 1] = round_up(n[l + 1], kPad<T>);
            if (ld[l + 1] > max_ld) max_ld = ld[l + 1];
            woff[l] = off;
            off += n[l] * ld[l + 1];
            boff[l] = off;
            off += ld[l + 1];
            toff[l] = toffset;
            toffset += n[l] * n[l + 1] + n[l + 1];
        }
        packed = off;
        return true;
    }
    Net() = default;
    Net(const Net&) = delete;
    Net& operator=(const Net&) = delete;
    ~Net() { std::free(heap_); }
};

// Public layout -> packed layout (padding zero) and back.
template <class T>
void pack(const Net& net, const T* theta, T* P) {
    for (int l = 0; l < net.L; ++l) {
        const int64_t nin = net.n[l], nout = net.n[l + 1], ldo = net.ld[l + 1];
        const T* w = theta + net.toff[l];
        for (int64_t i = 0; i < nin; ++i) {
            std::memcpy(P + net.woff[l] + i * ldo, w + i * nout, sizeof(T) * static_cast<size_t>(nout));
            std::memset(P + net.woff[l] + i * ldo + nout, 0, sizeof(T) * static_cast<size_t>(ldo - nout));
        }
        std::memcpy(P + net.boff[l], w + nin * nout, sizeof(T) * static_cast<size_t>(nout));
        std::memset(P + net.boff[l] + nout, 0, sizeof(T) * static_cast<size_t>(ldo - nout));
    }
}
template <class T>
void unpack(const Net& net, const T* P, T* theta) {
    for (int l = 0; l < net.L; ++l) {
        const int64_t nin = net.n[l], nout = net.n[l + 1], ldo = net.ld[l + 1];
        T* w = theta + net.toff[l];
        for (int64_t i = 0; i < nin; ++i)
            std::memcpy(w + i * nout, P + net.woff[l] + i * ldo, sizeof(T) * static_cast<size_t>(nout));
        std::memcpy(w + nin * nout, P + net.boff[l], sizeof(T) * static_cast<size_t>(nout));
    }
}

// ---------------------------------------------------------------------------------------------
// Dense-layer kernels for a block of R rows (R a compile-time constant, so the accumulators
// live in registers).

// The input layer skips inputs that are zero in every row of a block: MNIST's pixels are mostly
// zeros, and about half of the 784 inputs are zero in all 10 rows of a mini-batch. Their products
// would add exactly +0 to every sum (for finite weights), so the results are the same bits. The
// block's other inputs are listed once (nonzero_inputs) and both the forward pass and the weight
// update walk that list.

// The indices i < n_in at which some row xr[r] has a nonzero bit (so -0.0 counts as nonzero), in
// increasing order, into idx (room for n_in + 16: a chunk's indices are stored as one vector, the
// compressed ones first; a compressing store to memory is slow on some CPUs); returns how many.
template <class T, int R>
int64_t nonzero_inputs(const T* const* xr, int64_t n_in, int32_t* idx) {
    typedef std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t> U;
    typedef U UV __attribute__((vector_size(64)));
    constexpr int64_t kChunk = 64 / static_cast<int64_t>(sizeof(T));
    const int64_t full = n_in / kChunk * kChunk;
    int64_t count = 0;
    for (int64_t i = 0; i < full; i += kChunk) {
        UV acc = {};
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
            UV v;
            __builtin_memcpy(&v, xr[r] + i, sizeof v);
            acc |= v;
        }
#if defined(__AVX512F__)
        const __m512i a = reinterpret_cast<__m512i>(acc);
        const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(i)),
                                              _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        if constexpr (sizeof(T) == 4) {
            const __mmask16 m = _mm512_test_epi32_mask(a, a);
            _mm512_storeu_si512(idx + count, _mm512_maskz_compress_epi32(m, base));
            count += __builtin_popcount(m);
        } else {
            const __mmask8 m = _mm512_test_epi64_mask(a, a);
            _mm512_storeu_si512(idx + count, _mm512_maskz_compress_epi32(static_cast<__mmask16>(m), base));
            count += __builtin_popcount(m);
        }
#else
#pragma GCC unroll 16
        for (int64_t j = 0; j < kChunk; ++j) {
            idx[count] = static_cast<int32_t>(i + j);
            count += acc[j] != 0;
        }
#endif
    }
    for (int64_t i = full; i < n_in; ++i) {
        bool any = false;
        for (int r = 0; r < R; ++r) any = any || xr[r][i] != T(0) || __builtin_signbit(xr[r][i]);
        idx[count] = static_cast<int32_t>(i);
        count += any;
    }
    return count;
}

// z (R x ldw) = x (the R rows xr[r], n_in columns each) W (n_in x ldw) + b.
// z overwritten. With idx (see nonzero_inputs), only the n_idx inputs listed there are taken, and
// the first n_prefetch addresses of `prefetch` are prefetched on the way (the next mini-batch's rows,
// so that their trip from memory overlaps this arithmetic). (Forward passes alone gain less from
// the list than training: their blocks have 16 rows, whose inputs are less often all zero than
// those of a 10-row mini-batch; predict over the MNIST test set, about 10%.)
template <class T, int R>
void dense_forward(const T* const* xr, int64_t n_in, const T* W, const T* b, int64_t ldw, T* z,
                   const void* const* prefetch = nullptr, int64_t n_prefetch = 0, const int32_t* idx = nullptr,
                   int64_t n_idx = 0) {
    for (int64_t c = 0; c < ldw; c += kLanes<T>) {
        vec<T> acc[R];
        const vec<T> bv = vload(b + c);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) acc[r] = bv;
        const T* x[R];
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) x[r] = xr[r];
        int64_t pf = 0;
        if (idx) {
            // Two prefetches per listed input: about half the inputs are listed.
#pragma GCC unroll 4
            for (int64_t k = 0; k < n_idx; ++k) {
                if (pf < n_prefetch) {
                    __builtin_prefetch(prefetch[pf], 0, FASTGD_PREFETCH_LOCALITY);
                    if (pf + 1 < n_prefetch) __builtin_prefetch(prefetch[pf + 1], 0, FASTGD_PREFETCH_LOCALITY);
                    pf += 2;
                }
                const int64_t i = idx[k];
                const vec<T> wv = vload(W + i * ldw + c);
#pragma GCC unroll 32
                for (int r = 0; r < R; ++r) acc[r] += x[r][i] * wv;
            }
        } else {
            const T* w = W + c;
#pragma GCC unroll 8
            for (int64_t i = 0; i < n_in; ++i, w += ldw) {
                const vec<T> wv = vload(w);
#pragma GCC unroll 32
                for (int r = 0; r < R; ++r) acc[r] += x[r][i] * wv;
            }
        }
        for (; pf < n_prefetch; ++pf) __builtin_prefetch(prefetch[pf], 0, FASTGD_PREFETCH_LOCALITY);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) vstore(z + r * ldw + c, acc[r]);
        n_prefetch = 0;
    }
}

// W (n_in x ldw) += x^T (scale * d) and b += column sums of (scale * d), where x is the R rows
// xr[r] and d is R rows of stride ldw. Accumulates into W and b: with W, b the parameters
// and scale = -eta/m this is a fused SGD step; with a gradient buffer and scale = 1/m it
// accumulates the gradient.
// With kAssign, W and b are overwritten with x^T (scale * d) and its column sums instead (a gradient
// buffer's first block: no separate clearing pass). With idx (see nonzero_inputs), only the rows of W
// of the n_idx inputs listed there change (kAssign: the others are set to zero).
template <class T, int R, bool kAssign = false>
void dense_rank_update(const T* const* xr, int64_t n_in, const T* d, T scale, T* W, T* b, int64_t ldw,
                       const int32_t* idx = nullptr, int64_t n_idx = 0) {
    const T* x[R];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) x[r] = xr[r];
    for (int64_t c = 0; c < ldw; c += kLanes<T>) {
        vec<T> dv[R];
        vec<T> bv = kAssign ? vec<T>{} : vload(b + c);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
            dv[r] = vload(d + r * ldw + c) * scale;
            bv += dv[r];
        }
        vstore(b + c, bv);
        if (idx) {
            // One listed input at a time, its sum in two halves (two shorter dependency chains).
            int64_t next = 0;  // kAssign: rows below this one are written
#pragma GCC unroll 2
            for (int64_t k = 0; k < n_idx; ++k) {
                const int64_t i = idx[k];
                if (kAssign)
                    for (; next < i; ++next) vstore(W + next * ldw + c, vec<T>{});
                vec<T> acc0 = kAssign ? vec<T>{} : vload(W + i * ldw + c), acc1 = vec<T>{};
#pragma GCC unroll 32
                for (int r = 0; r + 1 < R; r += 2) {
                    acc0 += x[r][i] * dv[r];
                    acc1 += x[r + 1][i] * dv[r + 1];
                }
                if (R % 2) acc0 += x[R - 1][i] * dv[R - 1];
                vstore(W + i * ldw + c, acc0 + acc1);
                next = i + 1;
            }
            if (kAssign)
                for (; next < n_in; ++next) vstore(W + next * ldw + c, vec<T>{});
            continue;
        }
        int64_t i = 0;
        for (; i + kUnroll <= n_in; i += kUnroll) {
            vec<T> acc[kUnroll];
#pragma GCC unroll 16
            for (int u = 0; u < kUnroll; ++u) acc[u] = kAssign ? vec<T>{} : vload(W + (i + u) * ldw + c);
#pragma GCC unroll 32
            for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
                for (int u = 0; u < kUnroll; ++u) acc[u] += x[r][i + u] * dv[r];
            }
#pragma GCC unroll 16
            for (int u = 0; u < kUnroll; ++u) vstore(W + (i + u) * ldw + c, acc[u]);
        }
        for (; i < n_in; ++i) {
            vec<T> acc = kAssign ? vec<T>{} : vload(W + i * ldw + c);
#pragma GCC unroll 32
            for (int r = 0; r < R; ++r) acc += x[r][i] * dv[r];
            vstore(W + i * ldw + c, acc);
        }
    }
}

// One optimizer step of a layer fused with its weight gradient, for a mini-batch that is one
// block of R rows: g = x^T d / m, plus l2 W on the weights; with momentum V = mu V - eta g and
// W += V, without it W -= eta g. W, b, VW, Vb are updated in place.
template <class T, int R, bool kMomentum>
void dense_step(const T* const* xr, int64_t n_in, const T* d, T inv_m, T eta, T mu, T l2, T* W, T* b, T* VW,
                T* Vb, int64_t ldw) {
    const T* x[R];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) x[r] = xr[r];
    for (int64_t c = 0; c < ldw; c += kLanes<T>) {
        vec<T> dv[R];
        vec<T> gb = vec<T>{};
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
            dv[r] = vload(d + r * ldw + c) * inv_m;
            gb += dv[r];
        }
        if (kMomentum) {
            const vec<T> v = vload(Vb + c) * mu - eta * gb;
            vstore(Vb + c, v);
            vstore(b + c, vload(b + c) + v);
        } else {
            vstore(b + c, vload(b + c) - eta * gb);
        }
        int64_t i = 0;
        for (; i < n_in; i += kUnroll) {
            const int U = n_in - i < kUnroll ? static_cast<int>(n_in - i) : kUnroll;
            if (U == kUnroll) {
                vec<T> wv[kUnroll], g[kUnroll];
#pragma GCC unroll 16
                for (int u = 0; u < kUnroll; ++u) {
                    wv[u] = vload(W + (i + u) * ldw + c);
                    g[u] = wv[u] * l2;
                }
#pragma GCC unroll 32
                for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
                    for (int u = 0; u < kUnroll; ++u) g[u] += x[r][i + u] * dv[r];
                }
#pragma GCC unroll 16
                for (int u = 0; u < kUnroll; ++u) {
                    if (kMomentum) {
                        const vec<T> v = vload(VW + (i + u) * ldw + c) * mu - eta * g[u];
                        vstore(VW + (i + u) * ldw + c, v);
                        vstore(W + (i + u) * ldw + c, wv[u] + v);
                    } else {
                        vstore(W + (i + u) * ldw + c, wv[u] - eta * g[u]);
                    }
                }
            } else {
                for (int u = 0; u < U; ++u) {
                    const vec<T> wv = vload(W + (i + u) * ldw + c);
                    vec<T> g = wv * l2;
#pragma GCC unroll 32
                    for (int r = 0; r < R; ++r) g += x[r][i + u] * dv[r];
                    if (kMomentum) {
                        const vec<T> v = vload(VW + (i + u) * ldw + c) * mu - eta * g;
                        vstore(VW + (i + u) * ldw + c, v);
                        vstore(W + (i + u) * ldw + c, wv + v);
                    } else {
                        vstore(W + (i + u) * ldw + c, wv - eta * g);
                    }
                }
            }
        }
    }
}

// WT (n_out rows of ldp) = W^T, W being n_in rows of ldw, with zeros in columns [n_in, ldp): by
// tiles of kLanes x kLanes, each transposed in registers (log2(kLanes) rounds of two-vector
// shuffles, each round swapping the off-diagonal blocks of twice its size).
template <class T>
void transpose_weights(const T* W, int64_t ldw, int64_t n_in, int64_t n_out, T* WT, int64_t ldp) {
    typedef typename IntOf<T>::type ivec;
    constexpr int64_t L = kLanes<T>;
    for (int64_t ib = 0; ib < ldp; ib += L) {
        for (int64_t cb = 0; cb < n_out; cb += L) {
            vec<T> t[L];
#pragma GCC unroll 16
            for (int64_t k = 0; k < L; ++k) t[k] = ib + k < n_in ? vload(W + (ib + k) * ldw + cb) : vec<T>{};
#pragma GCC unroll 4
            for (int64_t h = L / 2; h >= 1; h /= 2) {
                ivec lo, hi;
#pragma GCC unroll 16
                for (int64_t j = 0; j < L; ++j) {
                    lo[j] = static_cast<lane_t<T>>(j & h ? L + j - h : j);
                    hi[j] = static_cast<lane_t<T>>(j & h ? L + j : j + h);
                }
#pragma GCC unroll 16
                for (int64_t k = 0; k < L; ++k) {
                    if (k & h) continue;
                    const vec<T> a = t[k], b = t[k + h];
                    t[k] = __builtin_shuffle(a, b, lo);
                    t[k + h] = __builtin_shuffle(a, b, hi);
                }
            }
            for (int64_t k = 0; k < L && cb + k < n_out; ++k) vstore(WT + (cb + k) * ldp + ib, t[k]);
        }
    }
}

// Backpropagate the deltas through one layer:
// dprev[r, i] = f'(aprev[r, i]) * sum_c W[i, c] d[r, c] for i < n_in, 0 in the padding.
// d is R rows of stride ldw (n_out real columns); aprev and dprev R rows of stride ldp. The
// weights are first transposed into WT (n_out x ldp, padding zero), so that each row's sum is a
// few vector multiply-adds along i instead of one horizontal sum per (r, i); the R rows' sums are
// kept side by side, c = 0, 1, ... added to each in turn.
template <class T, int R>
void dense_backprop(const T* W, int64_t ldw, int64_t n_in, int64_t n_out, const T* d, const T* aprev, int64_t ldp,
                    int act, T* dprev, T* WT) {
    transpose_weights<T>(W, ldw, n_in, n_out, WT, ldp);
    for (int64_t i = 0; i < ldp; i += kLanes<T>) {
        vec<T> s[R];
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) s[r] = vec<T>{};
        for (int64_t c = 0; c < n_out; ++c) {
            const vec<T> wt = vload(WT + c * ldp + i);
#pragma GCC unroll 32
            for (int r = 0; r < R; ++r) s[r] += d[r * ldw + c] * wt;
        }
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
            const vec<T> a = vload(aprev + r * ldp + i);
            const vec<T> slope = act == kTanh ? T(1) - a * a : act == kRelu ? (a > 0 ? vec<T>{} + T(1) : vec<T>{})
                                                                           : a * (T(1) - a);
            vstore(dprev + r * ldp + i, s[r] * slope);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A block of rows through the whole network.

template <class T>
struct Work {
    const Net* net;
    T* P;        // packed parameters
    T** A;       // A[l], l = 1..L: activations of layer l, kRowBlock rows of stride ld[l]
    T* Zout;     // output layer's weighted inputs, kRowBlock x ld[L]
    T* D0;       // deltas, kRowBlock x max_ld, two buffers used in turn
    T* D1;
    T* WT;       // a layer's weights transposed, max_ld x max_ld
    const T* const* Arows;  // Arows[l * kRowBlock + r]: row r of A[l], for l = 1..L
    const T* rows[kRowBlock];  // the block's input rows (rows of X)
    int64_t labels[kRowBlock];
    int64_t correct;  // rows whose largest output is their label, counted by block_cost
    const void** prefetch;  // cache lines to prefetch during the first layer's forward pass
    int64_t n_prefetch;
    int32_t* idx;  // the input layer's inputs that are not zero in every row of the block (nonzero_inputs)
    int64_t n_idx;
    bool check_finite;  // forward passes alone: look for non-finite first-layer weighted inputs
    int nonfinite;      // set when one was NaN or infinite
};

// Whether the R rows of z (stride ld) are all finite: x - x is 0 for a finite x, NaN otherwise,
// and NaN survives the sum. (The check that lets forward passes do without a separate pass over X.)
template <class T>
bool rows_finite(const T* z, int R, int64_t ld) {
    vec<T> acc = vec<T>{};
    for (int r = 0; r < R; ++r)
        for (int64_t c = 0; c < ld; c += kLanes<T>) {
            const vec<T> v = vload(z + r * ld + c);
            acc += v - v;
        }
    bool ok = true;
    for (int64_t j = 0; j < kLanes<T>; ++j) ok = ok && acc[j] == acc[j];
    return ok;
}

template <class T>
int64_t work_size(const Net& net) {
    int64_t s = 0;
    for (int l = 1; l <= net.L; ++l) s += round_up(kRowBlock * net.ld[l], kPad<T>);
    s += round_up(kRowBlock * net.ld[net.L], kPad<T>);
    s += 2 * round_up(kRowBlock * net.max_ld, kPad<T>);
    s += round_up(net.max_ld * net.max_ld, kPad<T>);
    return s;
}

// Carve the scratch arrays out of `mem` (work_size elements), and pointer tables out of `Aptrs`
// (L + 1 entries) and `Arows` ((L + 1) * kRowBlock entries).
template <class T>
void work_attach(Work<T>& w, T* mem, T** Aptrs, const T** Arows) {
    const Net& net = *w.net;
    w.A = Aptrs;
    w.A[0] = nullptr;
    w.Arows = Arows;
    for (int l = 1; l <= net.L; ++l) {
        w.A[l] = mem;
        for (int r = 0; r < kRowBlock; ++r) Arows[l * kRowBlock + r] = mem + r * net.ld[l];
        mem += round_up(kRowBlock * net.ld[l], kPad<T>);
    }
    w.Zout = mem;
    mem += round_up(kRowBlock * net.ld[net.L], kPad<T>);
    w.D0 = mem;
    mem += round_up(kRowBlock * net.max_ld, kPad<T>);
    w.D1 = mem;
    mem += round_up(kRowBlock * net.max_ld, kPad<T>);
    w.WT = mem;
}

// z = f(z), a vector at a time, over R rows of stride ld.
template <class T, class F>
void map_rows(int R, T* z, int64_t ld, F f) {
    for (int r = 0; r < R; ++r)
        for (int64_t c = 0; c < ld; c += kLanes<T>) vstore(z + r * ld + c, f(vload(z + r * ld + c)));
}

// Apply the hidden activation in place to R rows of stride ld (n real columns; the padding may
// change, it is never read as an input).
template <class T>
void activate_rows(int act, int R, T* z, int64_t ld, int64_t n) {
    (void)n;
    // One loop per activation: with the choice inside the loop, the compiler computes more than
    // one of them for every vector and selects.
    if (act == kRelu)
        map_rows<T>(R, z, ld, [](const vec<T>& v) { return v > 0 ? v : vec<T>{}; });
    else if (act == kTanh)
        map_rows<T>(R, z, ld, [](const vec<T>& v) { return vtanh<T>(v); });
    else
        map_rows<T>(R, z, ld, [](const vec<T>& v) { return vsigmoid<T>(v); });
}

// Layer l's activations from its weighted inputs z (R rows): a hidden layer's in place, the output
// layer's into A[L] (padding columns zero).
template <class T>
void finish_layer(Work<T>& w, int l, T* z, int R) {
    const Net& net = *w.net;
    const int64_t ldo = net.ld[l + 1], nout = net.n[l + 1];
    if (l < net.L - 1) {
        activate_rows<T>(net.act, R, z, ldo, nout);
        return;
    }
    T* a = w.A[net.L];
    if (net.cost != kLogLikelihood) {
        // Sigmoid outputs, the padding columns set to zero by lane (no call per row to clear them).
        const auto lanes = lane_index<T>();
        for (int r = 0; r < R; ++r)
            for (int64_t c = 0; c < ldo; c += kLanes<T>)
                vstore(a + r * ldo + c, lanes < static_cast<lane_t<T>>(nout - c) ? vsigmoid<T>(vload(z + r * ldo + c))
                                                                                    : vec<T>{});
        return;
    }
    for (int r = 0; r < R; ++r) {
        const T* zr = z + r * ldo;
        T* ar = a + r * ldo;
        if (net.cost == kLogLikelihood) {
            T zmax = zr[0];
            for (int64_t j = 1; j < nout; ++j) zmax = zr[j] > zmax ? zr[j] : zmax;
            for (int64_t c = 0; c < ldo; c += kLanes<T>) vstore(ar + c, vexp<T>(vload(zr + c) - zmax));
            T sum = 0;
            for (int64_t j = 0; j < nout; ++j) sum += ar[j];
            const T inv = T(1) / sum;
            for (int64_t j = 0; j < nout; ++j) ar[j] *= inv;
        } else {
            for (int64_t c = 0; c < ldo; c += kLanes<T>) vstore(ar + c, vsigmoid<T>(vload(zr + c)));
        }
        for (int64_t j = nout; j < ldo; ++j) ar[j] = 0;
    }
}

// Where layer l's weighted inputs go: A[l + 1] for a hidden layer (activated in place), Zout for
// the output layer.
template <class T>
T* layer_z(Work<T>& w, int l) {
    return l == w.net->L - 1 ? w.Zout : w.A[l + 1];
}

// Forward pass of the R input rows w.rows: hidden activations into A[1..L-1], the output layer's
// weighted inputs into Zout and its activations into A[L] (padding columns zero). With first > 0,
// the layers from `first` on (layer first - 1's activations already in place).
template <class T, int R>
void block_forward(Work<T>& w, int first = 0) {
    const Net& net = *w.net;
    for (int l = first; l < net.L; ++l) {
        const int64_t ldo = net.ld[l + 1];
        T* z = layer_z(w, l);
        const T* const* in = l == 0 ? w.rows : w.Arows + l * kRowBlock;
        if (l == 0) w.n_idx = nonzero_inputs<T, R>(in, net.n[0], w.idx);
        const int32_t* idx = l == 0 ? w.idx : nullptr;
        dense_forward<T, R>(in, net.n[l], w.P + net.woff[l], w.P + net.boff[l], ldo, z, w.prefetch,
                            l == 0 ? w.n_prefetch : 0, idx, w.n_idx);
        if (l == 0 && w.check_finite && !rows_finite(z, R, ldo)) w.nonfinite = 1;
        finish_layer<T>(w, l, z, R);
    }
}

// Sum over the block's R rows of each row's cost (labels in w.labels); when delta is not null,
// also the output layer's deltas dC_row/dz into delta (R x ld[L], padding zero). Rows whose
// largest output (the first on ties, as predict) is their label are counted in w.correct. With
// cost_too false, only the deltas (and 0 returned).
template <class T>
double block_cost(Work<T>& w, int R, T* delta, bool cost_too = true) {
    const Net& net = *w.net;
    const int64_t nout = net.n[net.L], ldo = net.ld[net.L];
    const auto lanes = lane_index<T>();
    double total = 0;
    for (int r = 0; r < R; ++r) {
        const T* a = w.A[net.L] + r * ldo;
        const T* z = w.Zout + r * ldo;
        const int64_t label = w.labels[r];
        if (cost_too) {
            // The first largest output, without a branch per output (which the CPU mispredicts).
            int64_t best = 0;
            T top = a[0];
            for (int64_t j = 1; j < nout; ++j) {
                const bool above = a[j] > top;
                best = above ? j : best;
                top = above ? a[j] : top;
            }
            w.correct += best == label;
        }
        // A vector of outputs at a time: diff = a - y (y the label's one-hot row). The quadratic
        // cost adds the squares one output after another (each square rounded, then added); the
        // deltas are diff a (1 - a) for the quadratic cost, diff for the others, zero in the padding.
        T c = 0;
        for (int64_t c0 = 0; c0 < ldo; c0 += kLanes<T>) {
            const vec<T> av = vload(a + c0);
            const vec<T> diff = av - (lanes == static_cast<lane_t<T>>(label - c0) ? vec<T>{} + T(1) : vec<T>{});
            if (cost_too && net.cost == kQuadratic) {
                const vec<T> sq = diff * diff;
                const int64_t n = nout - c0 < kLanes<T> ? nout - c0 : kLanes<T>;
                for (int64_t j = 0; j < n; ++j) c += sq[j];
            }
            if (delta) {
                const vec<T> d = net.cost == kQuadratic ? diff * av * (T(1) - av) : diff;
                vstore(delta + r * ldo + c0, lanes < static_cast<lane_t<T>>(nout - c0) ? d : vec<T>{});
            }
        }
        if (!cost_too) {
            continue;
        } else if (net.cost == kQuadratic) {
            c *= T(0.5);
        } else if (net.cost == kCrossEntropy) {
            // -[y ln a + (1-y) ln(1-a)] with a = sigmoid(z): y softplus(-z) + (1-y) softplus(z).
            for (int64_t j = 0; j < nout; ++j) c += softplus(j == label ? -z[j] : z[j]);
        } else {
            // -ln softmax(z)_label = ln sum_j e^(z_j - zmax) - (z_label - zmax).
            T zmax = z[0];
            for (int64_t j = 1; j < nout; ++j) zmax = z[j] > zmax ? z[j] : zmax;
            T sum = 0;
            for (int64_t j = 0; j < nout; ++j) sum += xexp(z[j] - zmax);
            c = xlog(sum) - (z[label] - zmax);
        }
        total += static_cast<double>(c);
    }
    return total;
}

// What the backward pass does with each layer's weight gradient.
template <class T>
struct Update {
    enum Kind { kAccumulate, kAssign, kStep, kMomentumStep } kind;
    T* target;      // kAccumulate: target += x^T (scale * delta), into the packed parameters (a
    T scale;        //   fused plain SGD step, scale = -eta/m) or a packed gradient buffer (1/m);
                    //   kAssign: target = x^T (scale * delta) (a gradient buffer's first block)
    T eta, mu, l2;  // kStep, kMomentumStep: a fused optimizer step on w.P, scale = 1/m
    T* V;           // kMomentumStep: the packed velocity
};

// Apply `up` to one layer (or rows [lo, lo + n_in) of one): its weights W (n_in rows of ldw) and
// biases b, from the R rows `in` of its inputs and the deltas d. kAccumulate and kAssign write the
// target buffer's W and b (only the rows listed in idx, when given); kStep and kMomentumStep step the
// parameters W and b (and the velocity's VW and Vb).
template <class T, int R>
void layer_update(const Update<T>& up, const T* const* in, int64_t n_in, const T* d, int64_t ldw, T* W, T* b,
                  T* VW, T* Vb, const int32_t* idx, int64_t n_idx) {
    switch (up.kind) {
        case Update<T>::kAccumulate:
            dense_rank_update<T, R>(in, n_in, d, up.scale, W, b, ldw, idx, n_idx);
            break;
        case Update<T>::kAssign:
            dense_rank_update<T, R, true>(in, n_in, d, up.scale, W, b, ldw, idx, n_idx);
            break;
        case Update<T>::kStep:
            dense_step<T, R, false>(in, n_in, d, up.scale, up.eta, up.mu, up.l2, W, b, nullptr, nullptr, ldw);
            break;
        case Update<T>::kMomentumStep:
            dense_step<T, R, true>(in, n_in, d, up.scale, up.eta, up.mu, up.l2, W, b, VW, Vb, ldw);
            break;
    }
}

// Apply `up` to layer l from the block's R rows of its inputs (the input rows for l = 0, with the
// nonzero inputs listed by block_forward; else A[l]) and the deltas d of its weighted inputs.
template <class T, int R>
void layer_step(Work<T>& w, const Update<T>& up, int l, const T* d) {
    const Net& net = *w.net;
    const T* const* in = l == 0 ? w.rows : w.Arows + l * kRowBlock;
    const int64_t wo = net.woff[l], bo = net.boff[l];
    const int32_t* idx = l == 0 ? w.idx : nullptr;
    T* target = up.kind == Update<T>::kAccumulate || up.kind == Update<T>::kAssign ? up.target : w.P;
    T* V = up.kind == Update<T>::kMomentumStep ? up.V : nullptr;
    layer_update<T, R>(up, in, net.n[l], d, net.ld[l + 1], target + wo, target + bo, V ? V + wo : nullptr,
                       V ? V + bo : nullptr, idx, w.n_idx);
}

// Backward pass of the block after block_forward and block_cost (output deltas in w.D0): for
// each layer from the last down to layer `last`, backpropagate the deltas with the layer's
// weights as they were, then apply the update to that layer. Returns the deltas of layer
// last - 1's weighted inputs (with last > 0; R rows of stride ld[last]).
template <class T, int R>
T* block_backward(Work<T>& w, const Update<T>& up, int last = 0) {
    const Net& net = *w.net;
    T* d = w.D0;
    T* dnext = w.D1;
    for (int l = net.L - 1; l >= last; --l) {
        if (l > 0)
            dense_backprop<T, R>(w.P + net.woff[l], net.ld[l + 1], net.n[l], net.n[l + 1], d, w.A[l], net.ld[l],
                                 net.act, dnext, w.WT);
        layer_step<T, R>(w, up, l, d);
        T* t = d;
        d = dnext;
        dnext = t;
    }
    return d;
}

// Calls f(Int<R>{}) with R == rows as a compile-time constant, 1 <= rows <= kRowBlock.
template <int R>
struct Int {
    static constexpr int value = R;
};
template <int R = 1, class F>
inline void with_rows(int rows, F&& f) {
    if constexpr (R < kRowBlock) {
        if (rows == R) {
            f(Int<R>{});
            return;
        }
        with_rows<R + 1>(rows, f);
    } else {
        f(Int<R>{});
    }
}

// The block's input rows are R consecutive rows of X, starting at x.
template <class T>
void set_rows(Work<T>& w, const T* x, int64_t n0, int R) {
    for (int r = 0; r < R; ++r) w.rows[r] = x + r * n0;
}

// Gradients of mini-batches larger than one block are summed in kSlices parts, each part a run of
// whole blocks with its own scratch and gradient buffer, and the parts are then added in a fixed
// order: the result is the same however many threads share the parts.
constexpr int kSlices = 4;

// Everything one call needs: the packed parameters, optional packed buffers (velocity, one
// gradient per slice), and the scratch of each slice.
template <class T>
struct Session {
    Net net;
    T* mem = nullptr;
    T* P = nullptr;
    T* V = nullptr;  // packed velocity
    T* G[kSlices] = {};  // packed gradients
    void* tables = nullptr;
    int slices = 1;
    Work<T> work[kSlices] = {};

    // The input layer skips inputs that are zero in all of a block's rows (nonzero_inputs). backward:
    // the forward passes are followed by backward passes (training, gradients); forward passes alone
    // look for non-finite first-layer weighted inputs (training finds divergence from its cost).
    bool open(const Model& model, bool with_grad, bool with_velocity, int n_slices = 1, bool backward = false) {
        if (!net.template init<T>(model)) return false;
        slices = n_slices;
        const int64_t p = round_up(net.packed, kPad<T>);
        const int64_t ws = work_size<T>(net);
        const int64_t total = p * (1 + (with_velocity ? 1 : 0) + (with_grad ? slices : 0)) + ws * slices;
        const size_t bytes = static_cast<size_t>(total) * sizeof(T);
        // Per slice: A (L + 1 pointers), Arows ((L + 1) * kRowBlock), the prefetch list, idx.
        const int64_t idx_slots = ((net.n[0] + 16) * static_cast<int64_t>(sizeof(int32_t)) + static_cast<int64_t>(sizeof(void*)) - 1) /
                                  static_cast<int64_t>(sizeof(void*));
        const size_t per_slice =
            static_cast<size_t>((net.L + 1) * (1 + kRowBlock) + kRowBlock * lines_per_row<T>(net.n[0]) + idx_slots);
        mem = static_cast<T*>(std::aligned_alloc(static_cast<size_t>(kPadBytes), bytes));
        tables = std::malloc(sizeof(void*) * per_slice * static_cast<size_t>(slices));
        if (!mem || !tables) return false;
        std::memset(mem, 0, bytes);
        T* base = mem;
        P = base;
        base += p;
        if (with_velocity) {
            V = base;
            base += p;
        }
        for (int k = 0; with_grad && k < slices; ++k) {
            G[k] = base;
            base += p;
        }
        void** t = static_cast<void**>(tables);
        for (int k = 0; k < slices; ++k) {
            Work<T>& w = work[k];
            w.net = &net;
            w.P = P;
            w.correct = 0;
            w.nonfinite = 0;
            T** Aptrs = reinterpret_cast<T**>(t);
            t += net.L + 1;
            const T** Arows = const_cast<const T**>(reinterpret_cast<T**>(t));
            t += (net.L + 1) * kRowBlock;
            w.prefetch = const_cast<const void**>(t);
            t += kRowBlock * lines_per_row<T>(net.n[0]);
            w.idx = reinterpret_cast<int32_t*>(t);
            w.n_idx = 0;
            w.check_finite = !backward;
            t += idx_slots;
            work_attach(w, base, Aptrs, Arows);
            base += ws;
        }
        return true;
    }
    Session() = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() {
        std::free(mem);
        std::free(tables);
    }
};

// ---------------------------------------------------------------------------------------------
// Entry points.

// Forward passes over many rows are split into kSlices runs of whole blocks, run on as many
// threads as are available; a run's results depend only on its rows, and sums over the runs are
// added in a fixed order, so results do not depend on the thread count. Fewer rows than this
// take one run on the calling thread (waking workers costs more than it saves).
constexpr int64_t kRowsPerThreadedForward = 2048;

template <class T>
int forward_slices(int64_t n) {
    return n >= kRowsPerThreadedForward ? kSlices : 1;
}

template <class T, class F>
struct BlocksJob {
    Session<T>* s;
    const T* X;
    const int64_t* y;
    int64_t n;
    F* done;
};

template <class T, class F>
void run_blocks(void* ctx, int slice) {
    BlocksJob<T, F>& job = *static_cast<BlocksJob<T, F>*>(ctx);
    Session<T>& s = *job.s;
    Work<T>& w = s.work[slice];
    const int64_t n0 = s.net.n[0], n = job.n;
    const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
    const int64_t first = blocks * slice / s.slices, last = blocks * (slice + 1) / s.slices;
    const int64_t end = last * kRowBlock < n ? last * kRowBlock : n;
    for (int64_t j0 = first * kRowBlock; j0 < end; j0 += kRowBlock) {
        const int R = static_cast<int>(end - j0 < kRowBlock ? end - j0 : kRowBlock);
        if (job.y)
            for (int r = 0; r < R; ++r) w.labels[r] = job.y[j0 + r];
        set_rows(w, job.X + j0 * n0, n0, R);
        with_rows(R, [&](auto rows) { block_forward<T, decltype(rows)::value>(w); });
        (*job.done)(w, slice, j0, R);
    }
}

// The forward pass over n consecutive rows of X, a block at a time, in s.slices runs, calling
// done(w, slice, j0, R) after each block of R rows starting at row j0 (its outputs are then in
// w.A[L], its labels, when y is given, in w.labels). Calls for different slices may run at once.
template <class T, class F>
void forward_blocks(Session<T>& s, const T* X, const int64_t* y, int64_t n, F&& done) {
    using Fn = std::remove_reference_t<F>;
    BlocksJob<T, Fn> job{&s, X, y, n, &done};
    if (s.slices == 1)
        run_blocks<T, Fn>(&job, 0);
    else
        parallel_run(s.slices, run_blocks<T, Fn>, &job);
}

// kNonFinite when some block met a non-finite first-layer weighted input, else kOk.
template <class T>
int forward_status(const Session<T>& s) {
    for (int j = 0; j < s.slices; ++j)
        if (s.work[j].nonfinite) return kNonFinite;
    return kOk;
}

template <class T>
int k_forward(const Model& model, const T* theta, const T* X, int64_t n, T* out) {
    Session<T> s;
    if (!s.open(model, false, false, forward_slices<T>(n))) return kNoMemory;
    pack(s.net, theta, s.P);
    const int64_t nout = s.net.n[s.net.L], ldo = s.net.ld[s.net.L];
    forward_blocks(s, X, nullptr, n, [&](Work<T>& w, int, int64_t j0, int R) {
        const T* a = w.A[s.net.L];
        for (int r = 0; r < R; ++r)
            std::memcpy(out + (j0 + r) * nout, a + r * ldo, sizeof(T) * static_cast<size_t>(nout));
    });
    return forward_status(s);
}

template <class T>
int k_predict(const Model& model, const T* theta, const T* X, int64_t n, int64_t* labels) {
    Session<T> s;
    if (!s.open(model, false, false, forward_slices<T>(n))) return kNoMemory;
    pack(s.net, theta, s.P);
    const int64_t nout = s.net.n[s.net.L], ldo = s.net.ld[s.net.L];
    forward_blocks(s, X, nullptr, n, [&](Work<T>& w, int, int64_t j0, int R) {
        const T* a = w.A[s.net.L];
        for (int r = 0; r < R; ++r) {
            const T* ar = a + r * ldo;
            int64_t best = 0;
            for (int64_t j = 1; j < nout; ++j)
                if (ar[j] > ar[best]) best = j;
            labels[j0 + r] = best;
        }
    });
    return forward_status(s);
}

template <class T>
int k_cost(const Model& model, const T* theta, const T* X, const int64_t* y, int64_t n, double* mean_cost) {
    Session<T> s;
    if (!s.open(model, false, false, forward_slices<T>(n))) return kNoMemory;
    pack(s.net, theta, s.P);
    double part[kSlices] = {};
    forward_blocks(s, X, y, n,
                   [&](Work<T>& w, int slice, int64_t, int R) { part[slice] += block_cost<T>(w, R, nullptr); });
    double total = 0;
    for (int j = 0; j < s.slices; ++j) total += part[j];
    *mean_cost = total / static_cast<double>(n);
    return forward_status(s);
}

template <class T>
int k_grad(const Model& model, const T* theta, const T* X, const int64_t* y, int64_t n, T* out,
           double* mean_cost) {
    Session<T> s;
    if (!s.open(model, true, false, 1, true)) return kNoMemory;
    pack(s.net, theta, s.P);
    const int64_t n0 = s.net.n[0];
    const Update<T> up{Update<T>::kAccumulate, s.G[0], T(1) / static_cast<T>(n), 0, 0, 0, nullptr};
    double total = 0;
    for (int64_t j0 = 0; j0 < n; j0 += kRowBlock) {
        const int R = static_cast<int>(n - j0 < kRowBlock ? n - j0 : kRowBlock);
        for (int r = 0; r < R; ++r) s.work[0].labels[r] = y[j0 + r];
        set_rows(s.work[0], X + j0 * n0, n0, R);
        with_rows(R, [&](auto rows) {
            constexpr int RR = decltype(rows)::value;
            block_forward<T, RR>(s.work[0]);
            total += block_cost<T>(s.work[0], RR, s.work[0].D0);
            block_backward<T, RR>(s.work[0], up);
        });
    }
    unpack(s.net, s.G[0], out);
    *mean_cost = total / static_cast<double>(n);
    return kOk;
}

// A mini-batch larger than one block is split into slices of consecutive rows: n_slices(m) of
// them, as equal as whole rows allow, each cut into the fewest blocks of at most kRowBlock rows,
// again as equal as possible. The split depends only on m (never on the thread count), and each
// slice sums its blocks' gradients in its own buffer, so the result does not depend on which
// thread runs which slice. Below kRowsForFourSlices rows a mini-batch has at most two slices:
// the step reads every slice's gradient buffer, and with two cores fewer buffers to pass between
// them is faster (batch 100: about 5%).
constexpr int64_t kRowsForFourSlices = 256;
inline int n_slices(int64_t m) {
    const int64_t s = (m + kRowBlock - 1) / kRowBlock;
    const int most = m < kRowsForFourSlices ? 2 : kSlices;
    return static_cast<int>(s < most ? s : most);
}
// Rows [*first, *last) of the m rows belong to slice `slice` of `slices`.
inline void slice_rows(int64_t m, int slices, int slice, int64_t* first, int64_t* last) {
    *first = m * slice / slices;
    *last = m * (slice + 1) / slices;
}

// The cache lines of columns [lo, lo + n) of rows order[0..count) of X (row length n0), into out
// (room for lines_per_row(n) per row: the last line is listed too, for rows that do not start a
// line); returns how many.
template <class T>
int64_t plan_lines(const void** out, const T* X, int64_t n0, int64_t lo, int64_t n, const int64_t* order,
                   int64_t count) {
    constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(T));
    int64_t k = 0;
    for (int64_t r = 0; r < count; ++r) {
        const T* row = X + order[r] * n0 + lo;
        for (int64_t i = 0; i < n; i += kLine) out[k++] = row + i;
        out[k++] = row + n - 1;
    }
    return k;
}
// The whole rows order[0..count) into w.prefetch.
template <class T>
void plan_prefetch(Work<T>& w, const T* X, int64_t n0, const int64_t* order, int64_t count) {
    w.n_prefetch = plan_lines(w.prefetch, X, n0, 0, n0, order, count);
}

// theta -= eta * (G + l2 * W), or with momentum: V = mu V - eta (G + l2 W); theta += V, where G is
// the sum of the n_g gradient buffers g[0..n_g), added in that order. (Biases take no l2.) The
// packed layout makes every region a whole number of vectors.
template <class T>
void step_region(T* w, const T* const* g, int n_g, int64_t off, T* v, int64_t count, T eta, T mu, T l2) {
    for (int64_t k = off; k < off + count; k += kLanes<T>) {
        const vec<T> wk = vload(w + k);
        vec<T> gk = vload(g[0] + k);
        for (int j = 1; j < n_g; ++j) gk += vload(g[j] + k);
        gk += l2 * wk;
        if (v) {
            const vec<T> vk = vload(v + k) * mu - eta * gk;
            vstore(v + k, vk);
            vstore(w + k, wk + vk);
        } else {
            vstore(w + k, wk - eta * gk);
        }
    }
}
// The step restricted to the packed entries [lo, hi) (multiples of kPad).
template <class T>
void apply_step(const Net& net, T* P, const T* const* G, int n_g, T* V, T eta, T mu, T l2, int64_t lo, int64_t hi) {
    for (int l = 0; l < net.L; ++l) {
        const int64_t wo = net.woff[l], bo = net.boff[l], we = bo, be = bo + net.ld[l + 1];
        const int64_t w0 = wo > lo ? wo : lo, w1 = we < hi ? we : hi;
        const int64_t b0 = bo > lo ? bo : lo, b1 = be < hi ? be : hi;
        if (w1 > w0) step_region(P, G, n_g, w0, V, w1 - w0, eta, mu, l2);
        if (b1 > b0) step_region(P, G, n_g, b0, V, b1 - b0, eta, mu, T(0));
    }
}

// One slice of a large mini-batch: its blocks' forward passes and costs, and their gradient
// summed into the slice's own buffer.
template <class T>
struct SliceJob {
    Session<T>* s;
    const T* X;
    const int64_t* y;
    const int64_t* order;  // the mini-batch's rows
    int64_t m;             // rows in the mini-batch
    int slices;
    const int64_t* next_order;  // the next mini-batch's rows (prefetched at the end of each slice)
    int64_t next_m;             // rows in the next mini-batch, 0 if none
    double cost[kSlices];
};

template <class T>
void run_slice(void* ctx, int slice) {
    SliceJob<T>& job = *static_cast<SliceJob<T>*>(ctx);
    Session<T>& s = *job.s;
    Work<T>& w = s.work[slice];
    const int64_t n0 = s.net.n[0];
    int64_t first, last;
    slice_rows(job.m, job.slices, slice, &first, &last);
    const int64_t rows = last - first, blocks = (rows + kRowBlock - 1) / kRowBlock;
    // Where this slice's rows lie in the next mini-batch, for its first block's prefetch.
    int64_t next_first = 0, next_count = 0;
    if (job.next_m > 0) {
        const int next_slices = n_slices(job.next_m);
        if (slice < next_slices) {
            int64_t nf, nl;
            slice_rows(job.next_m, next_slices, slice, &nf, &nl);
            const int64_t nb = (nl - nf + kRowBlock - 1) / kRowBlock;
            next_first = nf;
            next_count = (nl - nf) / nb;  // the first block's rows (see below)
        }
    }
    Update<T> up{Update<T>::kAssign, s.G[slice], T(1) / static_cast<T>(job.m), 0, 0, 0, nullptr};
    double total = 0;
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t j0 = first + rows * b / blocks, j1 = first + rows * (b + 1) / blocks;
        const int R = static_cast<int>(j1 - j0);
        for (int r = 0; r < R; ++r) {
            const int64_t row = job.order[j0 + r];
            w.labels[r] = job.y[row];
            w.rows[r] = job.X + row * n0;
        }
        if (b + 1 < blocks) {
            const int64_t j2 = first + rows * (b + 2) / blocks;
            plan_prefetch(w, job.X, n0, job.order + j1, j2 - j1);
        } else {
            plan_prefetch(w, job.X, n0, job.next_order + next_first, next_count);
        }
        with_rows(R, [&](auto rr) {
            constexpr int RR = decltype(rr)::value;
            block_forward<T, RR>(w);
            total += block_cost<T>(w, RR, w.D0);
            block_backward<T, RR>(w, up);
        });
        up.kind = Update<T>::kAccumulate;
    }
    job.cost[slice] = total;
}


// How the leader chooses between its team and working alone (see team_sample): windows of at least
// kWindowNs; stints alone and calms that start at kFirstStintNs and double, up to kMaxStintNs; a
// wait for a helper longer than kStallNs, or a window in which the leader ran for less than
// kMinBusy of the time, calls for a trial alone.
constexpr int64_t kWindowNs = 1000000, kFirstStintNs = 2000000, kMaxStintNs = 256000000, kStallNs = 1000000;
constexpr double kMinBusy = 0.8;
// The team is kept only where it is at least this much faster than working alone: a second thread
// that gains less is not worth a core of a busy host (and trials that the team wins by noise would
// start the stints alone from their shortest again).
constexpr double kTeamMargin = 1.1;
// Tries (each a pause, about 25 ns here) after which an idle helper sleeps (see team_help).
constexpr unsigned kIdleSpins = 8192;
constexpr long kFirstNapNs = 20000, kMaxNapNs = 1000000;
// A trial of the team must not end before its helpers wake: it settles for a window first.
static_assert(kMaxNapNs <= kWindowNs, "a helper's nap must end within the window a trial settles for");

// ---------------------------------------------------------------------------------------------
// A training epoch with large mini-batches runs as one parallel_run for the whole epoch instead
// of one per mini-batch: task 0, which parallel_run runs on the calling thread, leads (it runs the
// epoch's loop and the stop callback), the others help. Each mini-batch is a sequence of phases (its slices,
// then the parameter step in chunks); the leader publishes a phase and every member claims its
// tasks one at a time, so a helper that is late (or never starts: parallel_run may run all tasks
// on the calling thread, one after another) only leaves more tasks to the leader, and the leader
// waits only for tasks already claimed. Which member runs a task never changes its result.
struct Team {
    struct Phase {
        void (*fn)(void*, int);
        void* ctx;
        int n;
    };
    uint64_t claim = 0;  // (phase number << 32) | next task of that phase
    int done = 0;        // tasks of the current phase finished
    int over = 0;        // set by the leader when the epoch is over
    uint64_t phase = 0;
    Phase slot[2] = {};  // phase p is described in slot[p & 1]
    // The leader's choice between working with its helpers and working alone (see team_sample):
    // the way it works now, whether this is a trial of it, whether the next window only settles,
    // until when to keep the current way without a trial, the lengths of the next stint alone and
    // of the next calm (no trial alone), the phases per nanosecond of the last window of each way
    // (kept from epoch to epoch, see run_epoch); whether a helper held the leader up (team_wait),
    // the phases so far (and of them, those the leader ran alone), and the current window's start
    // (clock, processor time, phases).
    struct Choice {
        bool solo = false, trial = false, settle = false;
        int64_t stint_until = 0, solo_ns = kFirstStintNs, calm_ns = kFirstStintNs;
        double team_rate = 0, solo_rate = 0;
    } choice;
    bool held_up = false;
    unsigned count = 0, window_count = 0, alone = 0;
    int64_t window_start = 0, window_cpu = 0;
};

inline void team_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

inline int64_t clock_ns(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Claims and runs one task of the current phase: 1 if it ran one, 0 if none is left, -1 if it
// lost a race for the task (try again).
inline int team_run_one(Team& t) {
    uint64_t c = __atomic_load_n(&t.claim, __ATOMIC_ACQUIRE);
    const uint64_t p = c >> 32;
    if (p == 0) return 0;
    Team::Phase& ph = t.slot[p & 1];
    const int i = static_cast<int>(c & 0xffffffffu);
    if (i >= __atomic_load_n(&ph.n, __ATOMIC_RELAXED)) return 0;
    if (!__atomic_compare_exchange_n(&t.claim, &c, c + 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return -1;
    // Phase p is still current, and stays so until this task is counted as done.
    ph.fn(ph.ctx, i);
    __atomic_fetch_add(&t.done, 1, __ATOMIC_RELEASE);
    return 1;
}

inline int64_t twice(int64_t ns) { return 2 * ns < kMaxStintNs ? 2 * ns : kMaxStintNs; }

// The leader, every 16th phase: at the end of each window of kWindowNs or more (its first after a
// change of way only settles), it compares the ways by phases per nanosecond. A team is faster
// than one thread only while its members run at the same time: on a host with more runnable
// threads than cores (other programs, or the team's own threads taking turns on one core) each
// mini-batch waits for a member that is not running, and the epoch can take twice as long as on
// one thread. So when the leader ran for less than kMinBusy of a window, or waited for a helper
// for longer than kStallNs, it tries working alone for a window (the helpers then sleep, see
// team_help), and keeps to the faster way: alone for a stint, then a trial of the team again, the
// stints doubling while working alone stays faster; or with the team, without a trial alone for a
// calm that doubles each time the trial loses. Which way a phase runs never changes its results.
__attribute__((noinline)) inline void team_sample(Team& t) {
    const int64_t now = clock_ns(CLOCK_MONOTONIC);
    if (t.window_start != 0 && now - t.window_start < kWindowNs) return;
    const int64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    Team::Choice& c = t.choice;
    if (t.window_start != 0 && !c.settle) {
        const double span = static_cast<double>(now - t.window_start);
        const double rate = static_cast<double>(t.count - t.window_count) / span;
        if (!c.solo) {
            c.team_rate = rate;
            if (c.trial) {  // the team again, after a stint alone
                c.trial = false;
                if (rate < kTeamMargin * c.solo_rate) {
                    c.solo = c.settle = true;
                    c.solo_ns = twice(c.solo_ns);
                    c.stint_until = now + c.solo_ns;
                } else {
                    c.solo_ns = kFirstStintNs;
                }
            } else if (now >= c.stint_until &&
                       (t.held_up || static_cast<double>(cpu - t.window_cpu) < kMinBusy * span)) {
                c.solo = c.trial = c.settle = true;
            }
        } else {
            c.solo_rate = rate;
            if (c.trial) {  // alone, for the first time since the team last won
                c.trial = false;
                if (kTeamMargin * rate > c.team_rate) {
                    c.calm_ns = kFirstStintNs;
                    c.stint_until = now + c.solo_ns;
                } else {
                    c.solo = false;
                    c.settle = true;
                    c.calm_ns = twice(c.calm_ns);
                    c.stint_until = now + c.calm_ns;
                }
            } else if (now >= c.stint_until) {
                c.solo = false;
                c.trial = c.settle = true;
            }
        }
    } else {
        c.settle = false;
    }
    t.held_up = false;
    t.window_start = now;
    t.window_cpu = cpu;
    t.window_count = t.count;
}

// The leader waits for the helpers' claimed tasks of n; a wait longer than kStallNs (a helper lost
// its processor in the middle of a task) is noted for team_sample.
__attribute__((noinline)) inline void team_wait(Team& t, int n) {
    int64_t start = 0;
    for (unsigned k = 1; __atomic_load_n(&t.done, __ATOMIC_ACQUIRE) < n; ++k) {
        team_relax();
        if ((k & 255) != 0 || t.held_up) continue;
        const int64_t now = clock_ns(CLOCK_MONOTONIC);
        if (start == 0)
            start = now;
        else
            t.held_up = now - start > kStallNs;
    }
}

// The leader: runs fn(ctx, i) for i in [0, n) with the team, then after_tasks() (its own work,
// while the helpers finish theirs), and returns when all are done. While the leader works alone
// (see team_sample) it runs every task itself, in order, and the helpers sleep.
template <class F>
inline void team_phase(Team& t, void (*fn)(void*, int), void* ctx, int n, F&& after_tasks) {
    if ((++t.count & 15) == 0) team_sample(t);
    if (t.choice.solo) {
        ++t.alone;
        for (int i = 0; i < n; ++i) fn(ctx, i);
        after_tasks();
        return;
    }
    const uint64_t p = ++t.phase;
    Team::Phase& ph = t.slot[p & 1];
    ph.fn = fn;
    ph.ctx = ctx;
    __atomic_store_n(&ph.n, n, __ATOMIC_RELAXED);
    __atomic_store_n(&t.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&t.claim, p << 32, __ATOMIC_RELEASE);
    while (team_run_one(t) != 0) {
    }
    after_tasks();
    if (__atomic_load_n(&t.done, __ATOMIC_ACQUIRE) < n) team_wait(t, n);
}
inline void team_phase(Team& t, void (*fn)(void*, int), void* ctx, int n) {
    team_phase(t, fn, ctx, n, [] {});
}

// A helper: runs the team's tasks until the leader says the epoch is over, or until another call
// is running on one core what it wanted to share (two Python threads training at once): then the
// leader goes on alone rather than the helper spinning on a core the other call needs. A helper
// that has found nothing to do for kIdleSpins tries (the leader works alone, or has lost its
// processor) sleeps, for kFirstNapNs and then twice as long each time up to kMaxNapNs, until it
// finds a task again: spinning on, it would take turns with the leader on a shared processor
// (yielding would not help: the scheduler gives it back its fair share).
inline void team_help(Team& t) {
    unsigned idle = 0;
    long nap = kFirstNapNs;
    while (!__atomic_load_n(&t.over, __ATOMIC_ACQUIRE)) {
        const int ran = team_run_one(t);
        if (ran > 0) {
            idle = 0;
            nap = kFirstNapNs;
        } else if (ran == 0) {
            if (threads_contended()) return;
            if (++idle < kIdleSpins) {
                team_relax();
            } else {
                const timespec ts{0, nap};
                nanosleep(&ts, nullptr);
                nap = 2 * nap < kMaxNapNs ? 2 * nap : kMaxNapNs;
            }
        }
    }
}

// The parameter step of a large mini-batch, in kStepChunks tasks over ranges of the packed
// parameters.
constexpr int kStepChunks = 4;
template <class T>
struct StepJob {
    Session<T>* s;
    int n_g;
    T eta, mu, l2;
    bool momentum;
};
template <class T>
void run_step_chunk(void* ctx, int chunk) {
    StepJob<T>& job = *static_cast<StepJob<T>*>(ctx);
    Session<T>& s = *job.s;
    const int64_t vecs = round_up(s.net.packed, kPad<T>) / kPad<T>;
    const int64_t lo = vecs * chunk / kStepChunks * kPad<T>, hi = vecs * (chunk + 1) / kStepChunks * kPad<T>;
    apply_step<T>(s.net, s.P, s.G, job.n_g, job.momentum ? s.V : nullptr, job.eta, job.mu, job.l2, lo, hi);
}

template <class T>
struct EpochArgs {
    Session<T>* s;
    const T* X;
    const int64_t* y;
    const int64_t* order;
    int64_t n_order, batch;  // n_order: on return, the rows used (fewer if stopped)
    T eta, mu, l2;
    bool momentum;
    StopFn stop;
    void* stop_ctx;
    Team* team;    // null: no helpers
    double total;  // the rows' summed cost
    int status;
};
// An epoch in slices of rows (or, up to one block per mini-batch, fused steps).
template <class T>
struct Epoch : EpochArgs<T> {
    bool fused;
};

// The fused step of a mini-batch of m rows that is one block: plain SGD adds -eta/m x^T delta to
// the parameters directly; with momentum or L2, the optimizer's step on the gradient.
template <class T>
Update<T> step_update(const EpochArgs<T>& e, int64_t m) {
    const T inv_m = T(1) / static_cast<T>(m);
    if (e.momentum) return Update<T>{Update<T>::kMomentumStep, nullptr, inv_m, e.eta, e.mu, e.l2, e.s->V};
    if (e.l2 != 0) return Update<T>{Update<T>::kStep, nullptr, inv_m, e.eta, e.mu, e.l2, nullptr};
    return Update<T>{Update<T>::kAccumulate, e.s->P, -e.eta / static_cast<T>(m), 0, 0, 0, nullptr};
}

template <class T>
void epoch_loop(Epoch<T>& e) {
    Session<T>& s = *e.s;
    const T* X = e.X;
    const int64_t* y = e.y;
    const int64_t* order = e.order;
    const T eta = e.eta, mu = e.mu, l2 = e.l2;
    const int64_t n0 = s.net.n[0], batch = e.batch;
    int64_t n_order = e.n_order;
    Work<T>& w = s.work[0];
    double total = 0;
    int64_t rows_since_check = 0;
    for (int64_t k = 0; k < n_order; k += batch) {
        const int64_t m = n_order - k < batch ? n_order - k : batch;
        if (e.fused) {
            const Update<T> up = step_update<T>(e, m);
            const int R = static_cast<int>(m);
            for (int r = 0; r < R; ++r) {
                const int64_t row = order[k + r];
                w.labels[r] = y[row];
                w.rows[r] = X + row * n0;
            }
            // The next mini-batch's rows are fetched from memory while this one is computed (rows
            // come in a random order, which no hardware prefetcher can guess).
            const int64_t next = k + m;
            plan_prefetch(w, X, n0, order + next, n_order - next < batch ? n_order - next : batch);
            with_rows(R, [&](auto rows) {
                constexpr int RR = decltype(rows)::value;
                block_forward<T, RR>(w);
                total += block_cost<T>(w, RR, w.D0);
                block_backward<T, RR>(w, up);
            });
        } else {
            const int64_t next_m = n_order - (k + m) < batch ? n_order - (k + m) : batch;
            SliceJob<T> job{&s, X, y, order + k, m, n_slices(m), order + k + m, next_m, {}};
            StepJob<T> step{&s, job.slices, eta, mu, l2, e.momentum};
            if (e.team) {
                team_phase(*e.team, run_slice<T>, &job, job.slices);
                team_phase(*e.team, run_step_chunk<T>, &step, kStepChunks);
            } else {
                for (int j = 0; j < job.slices; ++j) run_slice<T>(&job, j);
                for (int j = 0; j < kStepChunks; ++j) run_step_chunk<T>(&step, j);
            }
            for (int j = 0; j < job.slices; ++j) total += job.cost[j];
        }
        if (stop_requested(e.stop, e.stop_ctx, &rows_since_check, m, k + m < n_order)) {
            e.status = kStopped;
            n_order = k + m;  // rows actually used, for the mean cost
            break;
        }
    }
    e.n_order = n_order;
    e.total = total;
}

// A member of an epoch's team (E has a Team* team): task 0, on the calling thread, runs the epoch's
// loop and leads; any other helps.
template <class E, void (*Loop)(E&)>
void team_member(void* ctx, int task) {
    E& e = *static_cast<E*>(ctx);
    if (task == 0) {
        Loop(e);
        __atomic_store_n(&e.team->over, 1, __ATOMIC_RELEASE);
    } else {
        team_help(*e.team);
    }
}

// ---------------------------------------------------------------------------------------------
// Training with the first layer split by its inputs (networks of kMinSplitInputs inputs or more,
// mini-batches below kRowsForFourSlices rows). The first layer is nearly all the work of such a
// network. Its weights are cut into two parts by input (rows [0, cut) and [cut, n0) of W0), and a
// mini-batch goes in rounds of up to kRoundBlocks blocks of rows:
//   - the parts' phase, one task per part: the part's update for the round before (after a
//     mini-batch's last round, its step), then its partial weighted inputs x[lo:hi] W0[lo:hi, :]
//     for the next round;
//   - the middle: the two partial sums added, the other layers forward and backward with their
//     updates, the cost, and the first layer's deltas; in two tasks (halves of the round's blocks,
//     each with its own gradient buffer) when the round has several blocks.
// A part's weights stay with the thread that updates them (usually the same one each time: the
// leader claims task 0 first), and the threads exchange per round only the small arrays of
// weighted inputs and deltas, not the parameters or their gradients as the row slices do. That
// wins while mini-batches are small (batch 10 on two cores: about 1.3 times as fast as one core);
// from kRowsForFourSlices rows the row slices, which exchange once per mini-batch and use up to
// four threads, are as fast or faster. The cut and the rounds depend only on n0 and the mini-batch
// size, and each sum runs in the same order whichever thread runs it, so the results do not depend
// on the thread count; on one thread (split_loop_serial) the same operations run block by block.
constexpr int64_t kMinSplitInputs = 256;
inline int64_t split_cut(int64_t n0) { return n0 >= kMinSplitInputs ? round_up(n0 / 2, 16) : n0; }

template <class T>
struct Part {
    int64_t lo = 0, n = 0;         // this part's inputs: [lo, lo + n)
    const T** rows = nullptr;      // per block of the mini-batch, kRowBlock row pointers (X row + lo)
    int32_t* idx = nullptr;        // per block, n + 16 slots: its nonzero inputs (nonzero_inputs)
    int64_t* n_idx = nullptr;      // per block
    T* z = nullptr;                // per block, kRowBlock x ld[1] partial weighted inputs
    const T* bias = nullptr;       // added to the partial sums: part 0 the biases, part 1 zeros
    T* b = nullptr;                // where the part's step puts the biases (part 1: scratch)
    T* vb = nullptr;               // and their velocity
    T* gb = nullptr;               // and their gradient
    const void** prefetch = nullptr;
};

template <class T>
struct SplitEpoch : EpochArgs<T> {
    Part<T> part[2];
    T* d0 = nullptr;  // per block, kRowBlock x ld[1]: the first layer's deltas
    // The parts' phase: the update for blocks [upd_b0, upd_b1) of the mini-batch before, of upd_m
    // rows (none if upd_m == 0), then the forward pass of blocks [fwd_b0, fwd_b1) of the mini-batch
    // order[fwd_k .. fwd_k + fwd_m) (none if fwd_m == 0). The middle's phase: blocks
    // [mid_b0, mid_b1) of the mini-batch order[mid_k .. mid_k + mid_m), its cost summed in cost[0]
    // and cost[1] (see split_buffer).
    int64_t upd_m = 0, upd_b0 = 0, upd_b1 = 0, fwd_k = 0, fwd_m = 0, fwd_b0 = 0, fwd_b1 = 0;
    int64_t mid_k = 0, mid_m = 0, mid_b0 = 0, mid_b1 = 0;
    double cost[2] = {0, 0};
    // A mini-batch of one block on a team: the deltas that the steps of weights 1..L-1 take (those
    // of layers 2..L's weighted inputs, kRowBlock rows of ld[l + 1] for weights l, in that order;
    // see late_offset), kept from split_middle_early for split_middle_late, with that mini-batch's
    // update and row count.
    T* late_d = nullptr;
    Update<T> late_up{};
    int late_rows = 0;
    void* mem = nullptr;
    void** tables = nullptr;
};

// Where layer l's deltas (those of layer l + 1's weighted inputs, for W_l's update; 1 <= l < L) are
// kept in SplitEpoch::late_d.
inline int64_t late_offset(const Net& net, int l) {
    int64_t off = 0;
    for (int i = 1; i < l; ++i) off += kRowBlock * net.ld[i + 1];
    return off;
}

// Blocks of a mini-batch of m rows: the fewest of at most kRowBlock rows, as equal as possible.
inline int64_t batch_blocks(int64_t m) { return (m + kRowBlock - 1) / kRowBlock; }

// What a block's backward pass does in a mini-batch of m rows: for a mini-batch of one block, the
// fused step; else add its share of the gradient to the buffer G (first: overwrite it).
template <class T>
Update<T> block_update(const EpochArgs<T>& e, int64_t m, bool first, T* G) {
    if (batch_blocks(m) == 1) return step_update<T>(e, m);
    return Update<T>{first ? Update<T>::kAssign : Update<T>::kAccumulate, G, T(1) / static_cast<T>(m), 0, 0, 0,
                     nullptr};
}

// Block b of part h's forward pass over the mini-batch order[k .. k + m): the block's nonzero
// inputs and partial weighted inputs; the next rows (the next block, or the first block of the
// mini-batch after) are prefetched on the way.
template <class T>
void split_forward(SplitEpoch<T>& e, int h, int64_t k, int64_t m, int64_t b) {
    Session<T>& s = *e.s;
    Part<T>& p = e.part[h];
    const int64_t n0 = s.net.n[0], ld1 = s.net.ld[1], blocks = batch_blocks(m);
    const int64_t j0 = m * b / blocks, j1 = m * (b + 1) / blocks;
    const int R = static_cast<int>(j1 - j0);
    const T** rows = p.rows + b * kRowBlock;
    for (int r = 0; r < R; ++r) rows[r] = e.X + e.order[k + j0 + r] * n0 + p.lo;
    // The block's labels, which its middle reads next: on their way from memory during this pass.
    if (h == 0)
        for (int r = 0; r < R; ++r) __builtin_prefetch(e.y + e.order[k + j0 + r], 0, FASTGD_PREFETCH_LOCALITY);
    int64_t n_pf;
    if (b + 1 < blocks) {
        n_pf = plan_lines(p.prefetch, e.X, n0, p.lo, p.n, e.order + k + j1, m * (b + 2) / blocks - j1);
    } else {
        const int64_t next = k + m, left = e.n_order - next;
        const int64_t next_m = left < e.batch ? left : e.batch;
        n_pf = next_m > 0 ? plan_lines(p.prefetch, e.X, n0, p.lo, p.n, e.order + next, next_m / batch_blocks(next_m))
                          : 0;
    }
    int32_t* idx = p.idx + b * (p.n + 16);
    T* z = p.z + b * kRowBlock * ld1;
    with_rows(R, [&](auto rr) {
        constexpr int RR = decltype(rr)::value;
        p.n_idx[b] = nonzero_inputs<T, RR>(rows, p.n, idx);
        dense_forward<T, RR>(rows, p.n, s.P + s.net.woff[0] + p.lo * ld1, p.bias, ld1, z, p.prefetch, n_pf, idx,
                             p.n_idx[b]);
    });
}

// Block b of part h's weight update for a mini-batch of m rows, from the deltas in e.d0: for a
// mini-batch of one block the step, fused into the weight-gradient pass; else the block's share of
// the gradient, summed in the session's gradient buffer (which the parts share by rows).
template <class T>
void split_update(SplitEpoch<T>& e, int h, int64_t m, int64_t b) {
    Session<T>& s = *e.s;
    Part<T>& p = e.part[h];
    const int64_t ld1 = s.net.ld[1], blocks = batch_blocks(m);
    const int64_t wo = s.net.woff[0] + p.lo * ld1;
    const int R = static_cast<int>(m * (b + 1) / blocks - m * b / blocks);
    const Update<T> up = block_update<T>(e, m, b == 0, s.G[0]);
    T* W = (blocks > 1 ? s.G[0] : s.P) + wo;
    T* VW = up.kind == Update<T>::kMomentumStep ? s.V + wo : nullptr;
    with_rows(R, [&](auto rr) {
        layer_update<T, decltype(rr)::value>(up, p.rows + b * kRowBlock, p.n, e.d0 + b * kRowBlock * ld1, ld1, W,
                                             blocks > 1 ? p.gb : p.b, VW, p.vb, p.idx + b * (p.n + 16), p.n_idx[b]);
    });
}

// After the last block of a mini-batch of several: part h's step from the summed gradient.
template <class T>
void split_step(SplitEpoch<T>& e, int h) {
    Session<T>& s = *e.s;
    const Part<T>& p = e.part[h];
    const int64_t ld1 = s.net.ld[1];
    const T* g = s.G[0];
    T* v = e.momentum ? s.V : nullptr;
    step_region(s.P, &g, 1, s.net.woff[0] + p.lo * ld1, v, p.n * ld1, e.eta, e.mu, e.l2);
    if (h == 0) step_region(s.P, &g, 1, s.net.boff[0], v, ld1, e.eta, e.mu, T(0));
}

// The start of block b's middle in the mini-batch order[k .. k + m): its rows' labels into w, and
// their first layer's weighted inputs, the two parts' partial sums added, into layer_z(w, 0).
// Returns the block's row count.
template <class T>
int split_block_inputs(SplitEpoch<T>& e, Work<T>& w, int64_t k, int64_t m, int64_t b) {
    const int64_t ld1 = e.s->net.ld[1], blocks = batch_blocks(m);
    const int64_t j0 = m * b / blocks, j1 = m * (b + 1) / blocks;
    const int R = static_cast<int>(j1 - j0);
    for (int r = 0; r < R; ++r) w.labels[r] = e.y[e.order[k + j0 + r]];
    T* z = layer_z(w, 0);
    const T* z0 = e.part[0].z + b * kRowBlock * ld1;
    const T* z1 = e.part[1].z + b * kRowBlock * ld1;
    for (int64_t c = 0; c < R * ld1; c += kLanes<T>) vstore(z + c, vload(z0 + c) + vload(z1 + c));
    return R;
}

// Block b of the middle of the mini-batch order[k .. k + m), after both parts' forward passes:
// the first layer's weighted inputs (the two partial sums added), the other layers forward and
// backward with their updates, the cost (into e.cost[j]), and the first layer's deltas into e.d0.
// A mini-batch of several blocks has its blocks in two halves (split_buffer), each half with its
// own scratch and gradient buffer j; a mini-batch of one block is stepped as it goes.
template <class T>
void split_middle(SplitEpoch<T>& e, int64_t k, int64_t m, int64_t b, int j, bool first) {
    Session<T>& s = *e.s;
    Work<T>& w = s.work[j];
    const int64_t ld1 = s.net.ld[1];
    const int R = split_block_inputs(e, w, k, m, b);
    T* z = layer_z(w, 0);
    const Update<T> up = block_update<T>(e, m, first, s.G[j]);
    with_rows(R, [&](auto rr) {
        constexpr int RR = decltype(rr)::value;
        finish_layer<T>(w, 0, z, RR);
        block_forward<T, RR>(w, 1);
        e.cost[j] += block_cost<T>(w, RR, w.D0);
        const T* d = block_backward<T, RR>(w, up, 1);
        std::memcpy(e.d0 + b * kRowBlock * ld1, d, sizeof(T) * static_cast<size_t>(RR * ld1));
    });
}

// The middle of the mini-batch order[k .. k + m) of one block, on a team, in two pieces with the
// same operations on the same values as split_middle (so the same results): split_middle_early,
// what the parts wait for (the first layer's weighted inputs, the other layers forward, the
// deltas back down to the first layer's), and split_middle_late, the other layers' updates and
// the cost, which the leader runs after its part of the next phase, where it would otherwise wait
// for the helper's part (the helper starts later). Every layer's deltas are computed from the
// weights before the step, as in block_backward, and the steps of layers 1..L-1 touch nothing the
// parts read.
template <class T>
void split_middle_early(SplitEpoch<T>& e, int64_t k, int64_t m) {
    Session<T>& s = *e.s;
    Work<T>& w = s.work[0];
    const Net& net = s.net;
    const int R = split_block_inputs(e, w, k, m, 0);
    T* z = layer_z(w, 0);
    e.late_up = block_update<T>(e, m, true, s.G[0]);
    e.late_rows = R;
    with_rows(R, [&](auto rr) {
        constexpr int RR = decltype(rr)::value;
        finish_layer<T>(w, 0, z, RR);
        block_forward<T, RR>(w, 1);
        // The output layer's deltas: the first layer's, e.d0, in a network of one layer.
        block_cost<T>(w, RR, net.L > 1 ? e.late_d + late_offset(net, net.L - 1) : e.d0, false);
        for (int l = net.L - 1; l >= 1; --l)
            dense_backprop<T, RR>(s.P + net.woff[l], net.ld[l + 1], net.n[l], net.n[l + 1],
                                  e.late_d + late_offset(net, l), w.A[l], net.ld[l], net.act,
                                  l > 1 ? e.late_d + late_offset(net, l - 1) : e.d0, w.WT);
    });
}
template <class T>
void split_middle_late(SplitEpoch<T>& e) {
    Work<T>& w = e.s->work[0];
    const Net& net = e.s->net;
    with_rows(e.late_rows, [&](auto rr) {
        constexpr int RR = decltype(rr)::value;
        for (int l = net.L - 1; l >= 1; --l) layer_step<T, RR>(w, e.late_up, l, e.late_d + late_offset(net, l));
        e.cost[0] += block_cost<T>(w, RR, nullptr);
    });
}

// A mini-batch of several blocks is processed in rounds of up to kRoundBlocks blocks (so that a
// round's rows are still in cache when its update comes), and the middle of each round in two
// halves, each with its own scratch and gradient buffer. Block b of a mini-batch of m rows uses
// buffer split_buffer(m, b, &first); first: it is that buffer's first block of the mini-batch.
constexpr int64_t kRoundBlocks = 4;
inline int64_t round_end(int64_t m, int64_t b0) {
    const int64_t blocks = batch_blocks(m);
    return blocks - b0 < kRoundBlocks ? blocks : b0 + kRoundBlocks;
}
inline int split_buffer(int64_t m, int64_t b, bool* first) {
    const int64_t r0 = b / kRoundBlocks * kRoundBlocks, mid = r0 + (round_end(m, r0) - r0 + 1) / 2;
    *first = r0 == 0 && (b == 0 || b == mid);
    return b < mid ? 0 : 1;
}

// After the middle of a mini-batch of several blocks: the other layers' step, from the two halves'
// gradients.
template <class T>
void split_middle_step(SplitEpoch<T>& e) {
    const Net& net = e.s->net;
    if (net.L == 1) return;
    apply_step<T>(net, e.s->P, e.s->G, 2, e.momentum ? e.s->V : nullptr, e.eta, e.mu, e.l2, net.woff[1], net.packed);
}

// A task of the team in the parts' phase: part h's update for a round of the mini-batch before
// (if any; after its last round, the step, with the other layers' step in part 0's task), then its
// forward pass over a round of the next one.
template <class T>
void split_task(void* ctx, int h) {
    SplitEpoch<T>& e = *static_cast<SplitEpoch<T>*>(ctx);
    if (e.upd_m > 0) {
        for (int64_t b = e.upd_b0; b < e.upd_b1; ++b) split_update(e, h, e.upd_m, b);
        const int64_t blocks = batch_blocks(e.upd_m);
        if (blocks > 1 && e.upd_b1 == blocks) {
            split_step(e, h);
            if (h == 0) split_middle_step(e);
        }
    }
    for (int64_t b = e.fwd_b0; e.fwd_m > 0 && b < e.fwd_b1; ++b) split_forward(e, h, e.fwd_k, e.fwd_m, b);
}

// A task of the team in the middle's phase: the round's blocks of buffer j.
template <class T>
void split_middle_task(void* ctx, int j) {
    SplitEpoch<T>& e = *static_cast<SplitEpoch<T>*>(ctx);
    for (int64_t b = e.mid_b0; b < e.mid_b1; ++b) {
        bool first;
        if (split_buffer(e.mid_m, b, &first) == j) split_middle(e, e.mid_k, e.mid_m, b, j, first);
    }
}

// After the last round of the mini-batch order[k .. k + m): whether the epoch stops there (see
// stop_requested), and the parts' next forward passes, over the first round of the mini-batch
// after it (none when stopping or at the end).
template <class T>
bool split_next(SplitEpoch<T>& e, int64_t k, int64_t m, int64_t* rows_since_check) {
    const bool stopping = stop_requested(e.stop, e.stop_ctx, rows_since_check, m, k + m < e.n_order);
    const int64_t left = e.n_order - (k + m);
    e.fwd_k = k + m;
    e.fwd_m = stopping ? 0 : (left < e.batch ? left : e.batch);
    e.fwd_b0 = 0;
    e.fwd_b1 = e.fwd_m > 0 ? round_end(e.fwd_m, 0) : 0;
    return stopping;
}

// The epoch with a team, round by round: the middle of a round (its two halves as two tasks), then
// the parts' tasks (the round's updates, and the next round's forward passes).
template <class T>
void split_loop(SplitEpoch<T>& e) {
    const int64_t batch = e.batch;
    int64_t n_order = e.n_order;
    int64_t rows_since_check = 0;
    bool stopping = false;
    e.upd_m = 0;
    e.fwd_k = 0;
    e.fwd_m = n_order < batch ? n_order : batch;
    e.fwd_b0 = 0;
    e.fwd_b1 = round_end(e.fwd_m, 0);
    team_phase(*e.team, split_task<T>, &e, 2);
    int64_t k = 0;
    for (; k < n_order && !stopping; k += batch) {
        const int64_t m = n_order - k < batch ? n_order - k : batch, blocks = batch_blocks(m);
        e.cost[0] = e.cost[1] = 0;
        if (blocks == 1) {
            split_middle_early(e, k, m);
            e.upd_m = m;
            e.upd_b0 = 0;
            e.upd_b1 = 1;
            stopping = split_next(e, k, m, &rows_since_check);
            team_phase(*e.team, split_task<T>, &e, 2, [&] { split_middle_late(e); });
            e.total += e.cost[0];
            e.total += e.cost[1];
            continue;
        }
        for (int64_t b0 = 0, b1; b0 < blocks; b0 = b1) {
            b1 = round_end(m, b0);
            e.mid_k = k;
            e.mid_m = m;
            e.mid_b0 = b0;
            e.mid_b1 = b1;
            if (b1 - b0 > 1)
                team_phase(*e.team, split_middle_task<T>, &e, 2);
            else
                split_middle_task<T>(&e, 0);
            e.upd_m = m;
            e.upd_b0 = b0;
            e.upd_b1 = b1;
            if (b1 < blocks) {
                e.fwd_b0 = b1;
                e.fwd_b1 = round_end(m, b1);
            } else {
                e.total += e.cost[0];
                e.total += e.cost[1];
                stopping = split_next(e, k, m, &rows_since_check);
            }
            team_phase(*e.team, split_task<T>, &e, 2);
        }
    }
    if (stopping) {
        e.status = kStopped;
        e.n_order = k;
    }
}

// The same epoch on one thread, block by block (each block's rows are still in cache for its
// update): the same operations on the same values as with a team, so the same results.
template <class T>
void split_loop_serial(SplitEpoch<T>& e) {
    const int64_t batch = e.batch;
    int64_t n_order = e.n_order;
    int64_t rows_since_check = 0;
    for (int64_t k = 0; k < n_order; k += batch) {
        const int64_t m = n_order - k < batch ? n_order - k : batch, blocks = batch_blocks(m);
        e.cost[0] = e.cost[1] = 0;
        for (int64_t b = 0; b < blocks; ++b) {
            split_forward(e, 0, k, m, b);
            split_forward(e, 1, k, m, b);
            bool first;
            const int j = split_buffer(m, b, &first);
            split_middle(e, k, m, b, j, first);
            split_update(e, 0, m, b);
            split_update(e, 1, m, b);
        }
        e.total += e.cost[0];
        e.total += e.cost[1];
        if (blocks > 1) {
            split_step(e, 0);
            split_middle_step(e);
            split_step(e, 1);
        }
        if (stop_requested(e.stop, e.stop_ctx, &rows_since_check, m, k + m < n_order)) {
            e.status = kStopped;
            n_order = k + m;  // rows actually used, for the mean cost
            break;
        }
    }
    e.n_order = n_order;
}

// The parts' scratch for mini-batches of up to `batch` rows; false if out of memory (e.mem and
// e.tables are freed by the caller).
template <class T>
bool split_open(SplitEpoch<T>& e) {
    const Net& net = e.s->net;
    const int64_t n0 = net.n[0], ld1 = net.ld[1], cut = split_cut(n0);
    const int64_t blocks = batch_blocks(e.batch);
    const int64_t zb = blocks * kRowBlock * ld1;  // one per-block array of kRowBlock x ld1
    // T arrays: d0, late_d, and per part z, zero bias, scratch b, vb, gb.
    const int64_t n_late = late_offset(net, net.L);
    const int64_t n_t = zb + n_late + 2 * (zb + 4 * ld1);
    e.mem = std::aligned_alloc(static_cast<size_t>(kPadBytes), static_cast<size_t>(n_t) * sizeof(T));
    // Pointer-sized slots: per part rows, idx (int32, n + 16 per block), n_idx, prefetch.
    const int64_t lines = lines_per_row<T>(n0);
    const int64_t slots = 2 * (blocks * kRowBlock + blocks * (n0 + 16) + blocks + kRowBlock * lines);
    e.tables = static_cast<void**>(std::malloc(sizeof(void*) * static_cast<size_t>(slots)));
    if (!e.mem || !e.tables) return false;
    std::memset(e.mem, 0, static_cast<size_t>(n_t) * sizeof(T));
    T* t = static_cast<T*>(e.mem);
    e.d0 = t;
    t += zb;
    e.late_d = t;
    t += n_late;
    void** q = e.tables;
    for (int h = 0; h < 2; ++h) {
        Part<T>& p = e.part[h];
        p.lo = h == 0 ? 0 : cut;
        p.n = h == 0 ? cut : n0 - cut;
        p.z = t;
        t += zb;
        p.bias = h == 0 ? e.s->P + net.boff[0] : t;  // zeros
        t += ld1;
        p.b = h == 0 ? e.s->P + net.boff[0] : t;
        t += ld1;
        p.vb = h == 0 && e.momentum ? e.s->V + net.boff[0] : t;
        t += ld1;
        p.gb = h == 0 && e.s->G[0] ? e.s->G[0] + net.boff[0] : t;
        t += ld1;
        p.rows = const_cast<const T**>(reinterpret_cast<T**>(q));
        q += blocks * kRowBlock;
        p.idx = reinterpret_cast<int32_t*>(q);
        q += blocks * (n0 + 16);  // more than blocks * (n + 16) int32s
        p.n_idx = reinterpret_cast<int64_t*>(q);
        q += blocks;
        p.prefetch = const_cast<const void**>(q);
        q += kRowBlock * lines;
    }
    return true;
}

// Runs an epoch (E: Epoch or SplitEpoch) as a team of `members` threads, or as Serial(e) on this
// thread when members is 1.
template <class E, void (*Loop)(E&), void (*Serial)(E&)>
void run_epoch(E& e, int members) {
    if (members > 1) {
        // The leader's choice between its team and working alone carries over to the next epoch
        // of this thread with the same loop, batch size and team (see team_sample).
        struct Memory {
            int64_t batch = 0;
            int members = 0;
            Team::Choice choice;
        };
        static thread_local Memory memory;
        Team team;
        if (memory.batch == e.batch && memory.members == members) team.choice = memory.choice;
        e.team = &team;
        parallel_run(members, team_member<E, Loop>, &e);
        memory = {e.batch, members, team.choice};
        note_team_epoch(team.alone, team.count);
    } else {
        Serial(e);
    }
}

// An epoch's results: theta (and the velocity) from the packed copies, the mean cost of its rows
// and the count of them classified correctly (summed over the session's scratch).
template <class T>
void finish_epoch(Session<T>& s, T* theta, T* velocity, bool momentum, double total, int64_t rows,
                  double* mean_cost, int64_t* n_correct) {
    unpack(s.net, s.P, theta);
    if (momentum) unpack(s.net, s.V, velocity);
    *mean_cost = rows > 0 ? total / static_cast<double>(rows) : 0.0;
    *n_correct = 0;
    for (int j = 0; j < s.slices; ++j) *n_correct += s.work[j].correct;
}

template <class T>
int split_train_epoch(const Model& model, T* theta, const T* X, const int64_t* y, const int64_t* order,
                      int64_t n_order, int64_t batch, T eta, T mu, T* velocity, T l2, StopFn stop,
                      void* stop_ctx, double* mean_cost, int64_t* n_correct) {
    const bool use_momentum = mu != T(0);
    Session<T> s;
    if (!s.open(model, batch > kRowBlock, use_momentum, 2, true)) return kNoMemory;
    pack(s.net, theta, s.P);
    if (use_momentum) pack(s.net, velocity, s.V);
    SplitEpoch<T> e;
    static_cast<EpochArgs<T>&>(e) = {&s, X, y, order, n_order, batch, eta, mu, l2, use_momentum, stop, stop_ctx,
                                     nullptr, 0.0, kOk};
    const bool ok = split_open(e);
    if (ok) {
        // Mini-batches of one row stay on one thread: a row's share of the first layer is too little
        // work to gain from meeting another thread (batch 1: the same or up to 13% slower on two).
        run_epoch<SplitEpoch<T>, split_loop<T>, split_loop_serial<T>>(e, batch < 2 || thread_count() < 2 ? 1 : 2);
        finish_epoch(s, theta, velocity, use_momentum, e.total, e.n_order, mean_cost, n_correct);
    }
    std::free(e.mem);
    std::free(e.tables);
    return ok ? e.status : kNoMemory;
}

template <class T>
int k_train_epoch(const Model& model, T* theta, const T* X, const int64_t* y, const int64_t* order,
                  int64_t n_order, int64_t batch, double eta_, double momentum_, T* velocity,
                  double l2_, StopFn stop, void* stop_ctx, double* mean_cost, int64_t* n_correct) {
    const bool use_momentum = momentum_ != 0.0;
    if (batch < kRowsForFourSlices && split_cut(model.sizes[0]) < model.sizes[0])
        return split_train_epoch<T>(model, theta, X, y, order, n_order, batch, static_cast<T>(eta_),
                                    static_cast<T>(momentum_), velocity, static_cast<T>(l2_), stop, stop_ctx,
                                    mean_cost, n_correct);
    // A mini-batch that fits in one block is stepped as its gradient is formed. A larger one has
    // its gradient summed in slices (run on as many threads as are available), then stepped.
    const bool fused = batch <= kRowBlock;
    Session<T> s;
    if (!s.open(model, !fused, use_momentum, fused ? 1 : kSlices, true)) return kNoMemory;
    pack(s.net, theta, s.P);
    if (use_momentum) pack(s.net, velocity, s.V);
    Epoch<T> e{{&s, X, y, order, n_order, batch, static_cast<T>(eta_), static_cast<T>(momentum_),
                static_cast<T>(l2_), use_momentum, stop, stop_ctx, nullptr, 0.0, kOk},
               fused};
    const int slices = fused ? 1 : n_slices(batch);
    run_epoch<Epoch<T>, epoch_loop<T>, epoch_loop<T>>(e, thread_count() < slices ? thread_count() : slices);
    finish_epoch(s, theta, velocity, use_momentum, e.total, e.n_order, mean_cost, n_correct);
    return e.status;
}

#define FASTGD_STR2(x) #x
#define FASTGD_STR(x) FASTGD_STR2(x)

}  // namespace

extern const Kernels<float> kernels_float = {FASTGD_STR(FASTGD_ISA),   k_forward<float>,
                                             k_predict<float>,         k_cost<float>,
                                             k_grad<float>,            k_train_epoch<float>};
extern const Kernels<double> kernels_double = {FASTGD_STR(FASTGD_ISA), k_forward<double>,
                                               k_predict<double>,      k_cost<double>,
                                               k_grad<double>,         k_train_epoch<double>};

}  // namespace FASTGD_ISA
}  // namespace fastgd
