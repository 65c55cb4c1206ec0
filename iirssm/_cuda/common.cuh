// Shared machinery of the iirssm CUDA kernels (see docs/gpu.md and
// shared/design/gpu.md section 3.1): types, shuffles, 16-byte vector I/O and
// the hand-written tile scan of the affine element (A, B).
//
// The element (A, B) stands for the map h -> A*h + B. Composition, earlier
// element first:  (A1, B1) then (A2, B2)  =  (A2*A1, A2*B1 + B2); identity (1, 0).
//
// Tile layout (one block of NT = 128 threads = NW warps): a lane owns V = 16/s
// consecutive elements per vector and U = 4 vectors per tile. Warp w covers the
// contiguous range [w*32*V*U, (w+1)*32*V*U) of the tile, its segment u the range
// [u*32*V, (u+1)*32*V) of that, lane l the V elements at l*V of the segment, so
// every vector load of a warp is one contiguous 512-byte segment.
//
// Association order of the scan (reproduced by iirssm/_cuda/_mirror.py):
//   1. per lane and segment: sequential composition of its V elements;
//   2. per segment: Kogge-Stone inclusive scan of the 32 lane aggregates with
//      shuffles (distances 1, 2, 4, 8, 16), exclusive prefix by one more shuffle;
//   3. per warp: serial carry across its U segments (segment totals from the
//      logical last lane);
//   4. per tile: warp totals into shared memory, each thread composes the
//      totals of the warps before it (serially, in warp order) and the tile
//      total;
//   5. outputs: h entering the lane = lane prefix applied to the warp's entering
//      state, which is the warp prefix applied to the tile's entering state;
//      then the V elements sequentially. The carry to the next tile is the tile
//      total applied to the tile's entering state.
// With REV = true everything runs in mirrored logical order (last element of
// the tile first): lanes 31..0 (__shfl_down_sync), segments U-1..0, warps
// NW-1..0, elements V-1..0; the memory layout is unchanged, so vector loads stay
// aligned.
#pragma once
#include <cupy/complex.cuh>

namespace iirssm {

// (enumerators rather than constexpr variables: no "declared but never referenced"
// warnings in sources that do not use them all)
enum : unsigned { FULL = 0xffffffffu };
enum : int {
    NT = 128,      // threads per block
    NW = NT / 32,  // warps per block
    UV = 4         // vectors per lane per tile
};

template <typename T> struct is_cplx { static constexpr bool value = false; };
template <typename R> struct is_cplx<complex<R>> { static constexpr bool value = true; };

template <typename T> struct real_of { typedef T type; };
template <typename R> struct real_of<complex<R>> { typedef R type; };

// minimum resident blocks per SM (launch bounds): 4, i.e. <= 128 registers per thread.
template <typename T> struct min_blocks { static constexpr int value = 4; };

// vectors per lane per tile: UV = 4, except complex<double> (2: its four
// independent segment scans do not fit 128 registers), so tiles hold
// 2048 / 1024 / 1024 / 256 elements (float, double, complex<float>, complex<double>).
template <typename T> struct uvec { static constexpr int value = UV; };
template <> struct uvec<complex<double>> { static constexpr int value = 2; };

// elements per 16-byte vector
template <typename T> struct vlen { static constexpr int value = 16 / (int)sizeof(T); };

// ------------------------------------------------------------------ scalars
__device__ __forceinline__ float conj_(float x) { return x; }
__device__ __forceinline__ double conj_(double x) { return x; }
template <typename R>
__device__ __forceinline__ complex<R> conj_(complex<R> x) { return complex<R>(x.real(), -x.imag()); }

__device__ __forceinline__ float real_(float x) { return x; }
__device__ __forceinline__ double real_(double x) { return x; }
template <typename R>
__device__ __forceinline__ R real_(complex<R> x) { return x.real(); }

// ------------------------------------------------------------------ shuffles
// Complex values are shuffled as their real and imaginary parts.
__device__ __forceinline__ float shfl_up_(float x, int d) { return __shfl_up_sync(FULL, x, d); }
__device__ __forceinline__ double shfl_up_(double x, int d) { return __shfl_up_sync(FULL, x, d); }
__device__ __forceinline__ float shfl_down_(float x, int d) { return __shfl_down_sync(FULL, x, d); }
__device__ __forceinline__ double shfl_down_(double x, int d) { return __shfl_down_sync(FULL, x, d); }
__device__ __forceinline__ float shfl_idx_(float x, int s) { return __shfl_sync(FULL, x, s); }
__device__ __forceinline__ double shfl_idx_(double x, int s) { return __shfl_sync(FULL, x, s); }
template <typename R>
__device__ __forceinline__ complex<R> shfl_up_(complex<R> x, int d) {
    return complex<R>(shfl_up_(x.real(), d), shfl_up_(x.imag(), d));
}
template <typename R>
__device__ __forceinline__ complex<R> shfl_down_(complex<R> x, int d) {
    return complex<R>(shfl_down_(x.real(), d), shfl_down_(x.imag(), d));
}
template <typename R>
__device__ __forceinline__ complex<R> shfl_idx_(complex<R> x, int s) {
    return complex<R>(shfl_idx_(x.real(), s), shfl_idx_(x.imag(), s));
}

// Select by value: a ternary on class-type lvalues (complex) selects addresses,
// which puts the operands in local memory.
template <typename T>
__device__ __forceinline__ T pick(bool c, T a, T b) {
    T r = b;
    if (c) r = a;
    return r;
}

// value from the logically previous lane (lane - d forwards, lane + d in reverse)
template <bool REV, typename T>
__device__ __forceinline__ T shfl_prev(T x, int d) {
    if constexpr (REV) return shfl_down_(x, d);
    else return shfl_up_(x, d);
}

// ------------------------------------------------------------------ vector I/O
// V elements at p (aligned to their size when vec): one 16-, 8- or 4-byte
// load (ld.global.nc) or store, with the parts moved as values (no memcpy through
// local memory).
template <typename T, int V> struct VecIO;
template <> struct VecIO<float, 4> {
    static __device__ __forceinline__ void load(const float* __restrict__ p, float (&o)[4]) {
        const float4 r = __ldg(reinterpret_cast<const float4*>(p));
        o[0] = r.x; o[1] = r.y; o[2] = r.z; o[3] = r.w;
    }
    static __device__ __forceinline__ void store(float* __restrict__ p, const float (&i)[4]) {
        *reinterpret_cast<float4*>(p) = make_float4(i[0], i[1], i[2], i[3]);
    }
};
template <> struct VecIO<float, 2> {
    static __device__ __forceinline__ void load(const float* __restrict__ p, float (&o)[2]) {
        const float2 r = __ldg(reinterpret_cast<const float2*>(p));
        o[0] = r.x; o[1] = r.y;
    }
    static __device__ __forceinline__ void store(float* __restrict__ p, const float (&i)[2]) {
        *reinterpret_cast<float2*>(p) = make_float2(i[0], i[1]);
    }
};
template <> struct VecIO<double, 2> {
    static __device__ __forceinline__ void load(const double* __restrict__ p, double (&o)[2]) {
        const double2 r = __ldg(reinterpret_cast<const double2*>(p));
        o[0] = r.x; o[1] = r.y;
    }
    static __device__ __forceinline__ void store(double* __restrict__ p, const double (&i)[2]) {
        *reinterpret_cast<double2*>(p) = make_double2(i[0], i[1]);
    }
};
template <> struct VecIO<double, 1> {
    static __device__ __forceinline__ void load(const double* __restrict__ p, double (&o)[1]) {
        o[0] = __ldg(p);
    }
    static __device__ __forceinline__ void store(double* __restrict__ p, const double (&i)[1]) {
        *p = i[0];
    }
};
template <> struct VecIO<complex<float>, 2> {
    static __device__ __forceinline__ void load(const complex<float>* __restrict__ p,
                                                complex<float> (&o)[2]) {
        const float4 r = __ldg(reinterpret_cast<const float4*>(p));
        o[0] = complex<float>(r.x, r.y);
        o[1] = complex<float>(r.z, r.w);
    }
    static __device__ __forceinline__ void store(complex<float>* __restrict__ p,
                                                 const complex<float> (&i)[2]) {
        *reinterpret_cast<float4*>(p) =
            make_float4(i[0].real(), i[0].imag(), i[1].real(), i[1].imag());
    }
};
template <> struct VecIO<complex<double>, 1> {
    static __device__ __forceinline__ void load(const complex<double>* __restrict__ p,
                                                complex<double> (&o)[1]) {
        const double2 r = __ldg(reinterpret_cast<const double2*>(p));
        o[0] = complex<double>(r.x, r.y);
    }
    static __device__ __forceinline__ void store(complex<double>* __restrict__ p,
                                                 const complex<double> (&i)[1]) {
        *reinterpret_cast<double2*>(p) = make_double2(i[0].real(), i[0].imag());
    }
};

template <typename T, int V>
__device__ __forceinline__ void vload(const T* __restrict__ p, T (&out)[V]) {
    VecIO<T, V>::load(p, out);
}
template <typename T, int V>
__device__ __forceinline__ void vstore(T* __restrict__ p, const T (&in)[V]) {
    VecIO<T, V>::store(p, in);
}

// Load V elements of a row at positions p..p+V-1; positions >= L get `fill`.
// `vec` (uniform): the row start is aligned for one V-element vector access.
template <typename T, int V>
__device__ __forceinline__ void load_row(bool vec, const T* __restrict__ row, long long p,
                                         long long L, T fill, T (&out)[V]) {
    if (vec && p + V <= L) {
        vload<T, V>(row + p, out);
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j) {
            out[j] = fill;
            if (p + j < L) out[j] = row[p + j];
        }
    }
}

template <typename T, int V>
__device__ __forceinline__ void store_row(bool vec, T* __restrict__ row, long long p,
                                          long long L, const T (&in)[V]) {
    if (vec && p + V <= L) {
        vstore<T, V>(row + p, in);
    } else {
#pragma unroll
        for (int j = 0; j < V; ++j)
            if (p + j < L) row[p + j] = in[j];
    }
}

// ------------------------------------------------------------------ shared slots
// Raw shared storage (complex types have constructors, so no typed __shared__).
template <typename TA, typename T>
struct Slots {
    TA* a;
    T* b;
};

// ------------------------------------------------------------------ tile scan
// Given the elements (A[u][v], B[u][v]) of a tile (identity where padded),
// computes for this lane the prefix preA/preB[u] (composition of everything in
// its warp before this lane's segment-u vector), the prefix (wA, wB) of its warp
// in the tile and the tile total (tA, tB). One __syncthreads (double-buffered
// slots, `buf` alternating 0/1 between consecutive calls).
template <typename T, typename TA, int U, int V, bool REV>
__device__ __forceinline__ void tile_scan(const TA (&A)[U][V], const T (&B)[U][V],
                                          TA (&preA)[U], T (&preB)[U], Slots<TA, T> s, int buf,
                                          TA& wA, T& wB, TA& tA, T& tB) {
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const int wl = REV ? (NW - 1 - w) : w;
    const int ll = REV ? (31 - lane) : lane;
    TA cA = TA(1);
    T cB = T(0);
#pragma unroll
    for (int k = 0; k < U; ++k) {
        const int u = REV ? (U - 1 - k) : k;
        TA a = TA(1);
        T b = T(0);
#pragma unroll
        for (int j = 0; j < V; ++j) {
            const int v = REV ? (V - 1 - j) : j;
            b = A[u][v] * b + B[u][v];
            a = A[u][v] * a;
        }
#pragma unroll
        for (int d = 1; d < 32; d <<= 1) {
            TA pa = shfl_prev<REV>(a, d);
            T pb = shfl_prev<REV>(b, d);
            if (ll >= d) {
                b = a * pb + b;
                a = a * pa;
            }
        }
        TA ea = shfl_prev<REV>(a, 1);
        T eb = shfl_prev<REV>(b, 1);
        if (ll == 0) {
            ea = TA(1);
            eb = T(0);
        }
        const TA sa = shfl_idx_(a, REV ? 0 : 31);
        const T sb = shfl_idx_(b, REV ? 0 : 31);
        preA[u] = ea * cA;
        preB[u] = ea * cB + eb;
        cB = sa * cB + sb;
        cA = sa * cA;
    }
    if (lane == 0) {
        s.a[buf * NW + wl] = cA;
        s.b[buf * NW + wl] = cB;
    }
    __syncthreads();
    TA pa = TA(1);
    T pb = T(0);
    wA = TA(1);
    wB = T(0);
#pragma unroll
    for (int i = 0; i < NW; ++i) {
        if (i == wl) {
            wA = pa;
            wB = pb;
        }
        const TA xa = s.a[buf * NW + i];
        const T xb = s.b[buf * NW + i];
        pb = xa * pb + xb;
        pa = xa * pa;
    }
    tA = pa;
    tB = pb;
}

}  // namespace iirssm
