// Row scans of h[t] = A[t]*h[t-1] + B[t] (and its adjoint), one block per row
// chunk, built on iirssm::tile_scan (common.cuh). Included by recurrence.cu and
// ema.cu.
//
// Rows are (R, L) with unit time stride and an int64 row stride per stream
// (0 = shared by every row). A launch covers R * nchunks blocks: block
// (row, chunk) walks the tiles [chunk*tpc, (chunk+1)*tpc) of its row with the
// state h carried in a register. nchunks == 1 is the one-block-per-row path;
// nchunks > 1 is the reduce-then-scan path for few long rows:
//   pass 1 (*_reduce): each chunk's aggregate (A, B) (tile totals composed in
//                      logical order), no output;
//   pass 2 (carry_scan): one block per row scans that row's aggregates in
//                      parallel (tile_scan again) from h0: the state entering
//                      every chunk;
//   pass 3 (*_fwd / *_bwd): every chunk re-scanned from its entering state.
// Chunk-indexed arrays (hin, aggA, aggB) are in logical order: index 0 is the
// chunk processed first (the last chunk of the row for reverse scans).
#pragma once
#include "common.cuh"

namespace iirssm {

enum { M_REC = 0, M_EMA = 1, M_RREV = 2 };

// Run-time flags (uniform over the launch), bits of `flags`:
//   F_AT:    the decay varies in time (else one value per row, read once);
//   F_VEC:   every stream's rows start aligned for vector accesses;
//   F_PASS1: reduce only (chunk aggregates), no output.
// They are run-time rather than template arguments to keep the number of
// instantiations (and NVRTC time) small; each is a uniform branch.
enum { F_AT = 1, F_VEC = 2, F_PASS1 = 4 };

// raw registers (c, x) -> element (A, B)
template <int MODE, typename TA, typename T>
__device__ __forceinline__ void element(TA c, T x, TA& A, T& B) {
    if constexpr (MODE == M_EMA) {
        A = TA(1) - c;
        B = c * x;
    } else {
        A = c;
        B = x;
    }
}

// one sequential step from raw registers (the EMA form h + c*(x - h), as on the CPU)
template <int MODE, typename TA, typename T>
__device__ __forceinline__ T step(T h, TA c, T x) {
    if constexpr (MODE == M_EMA) return h + c * (x - h);
    else return c * h + x;
}

template <typename T, typename TA, int MODE>
__device__ __forceinline__ void fwd_body(const TA* __restrict__ a, long long a_rs,
                                         const T* __restrict__ b, long long b_rs,
                                         T* __restrict__ y, long long y_rs,
                                         const T* __restrict__ hin, T* __restrict__ hf,
                                         TA* __restrict__ aggA, T* __restrict__ aggB,
                                         long long L, long long tpc, int nchunks, int flags) {
    const bool AT = flags & F_AT;
    const bool VEC = flags & F_VEC;
    const bool PASS1 = flags & F_PASS1;
    constexpr bool REV = (MODE == M_RREV);
    constexpr int V = vlen<T>::value;
    constexpr int U = uvec<T>::value;
    constexpr long long TILE = (long long)NT * U * V;
    constexpr int WSPAN = 32 * V * U;
    __shared__ __align__(16) unsigned char smem[2 * NW * (sizeof(TA) + sizeof(T))];
    Slots<TA, T> s{reinterpret_cast<TA*>(smem), reinterpret_cast<T*>(smem + 2 * NW * sizeof(TA))};

    const long long row = blockIdx.x / nchunks;
    const int chunk = (int)(blockIdx.x % nchunks);
    const int lc = REV ? (nchunks - 1 - chunk) : chunk;
    const long long ntiles = (L + TILE - 1) / TILE;
    const long long t_lo = (long long)chunk * tpc;
    const long long t_hi = t_lo + tpc < ntiles ? t_lo + tpc : ntiles;
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const TA* __restrict__ arow = a + row * a_rs;
    const T* __restrict__ brow = b + row * b_rs;
    const TA fillc = TA(MODE == M_EMA ? 0 : 1);   // identity element
    TA ac = fillc;
    if (!AT) ac = arow[0];
    T h = T(0);
    if (!PASS1) h = hin[row * nchunks + lc];
    TA gA = TA(1);
    T gB = T(0);
    int buf = 0;
    for (long long k = 0; k < t_hi - t_lo; ++k) {
        const long long tile = REV ? (t_hi - 1 - k) : (t_lo + k);
        const long long base = tile * TILE + w * WSPAN + lane * V;
        TA ra[U][V];
        T rb[U][V];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const long long p = base + u * 32 * V;
            load_row<T, V>(VEC, brow, p, L, T(0), rb[u]);
            if (AT) {
                load_row<TA, V>(VEC, arow, p, L, fillc, ra[u]);
            } else {
#pragma unroll
                for (int j = 0; j < V; ++j) ra[u][j] = pick(p + j < L, ac, fillc);
            }
        }
        TA A[U][V];
        T B[U][V];
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int j = 0; j < V; ++j) element<MODE>(ra[u][j], rb[u][j], A[u][j], B[u][j]);
        TA preA[U];
        T preB[U];
        TA wA, tA;
        T wB, tB;
        tile_scan<T, TA, U, V, REV>(A, B, preA, preB, s, buf, wA, wB, tA, tB);
        buf ^= 1;
        if (PASS1) {
            gB = tA * gB + tB;
            gA = tA * gA;
        } else {
            T* __restrict__ yrow = y + row * y_rs;
            const T hw = wA * h + wB;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const long long p = base + u * 32 * V;
                T hl = preA[u] * hw + preB[u];
                T out[V];
#pragma unroll
                for (int j = 0; j < V; ++j) {
                    const int v = REV ? (V - 1 - j) : j;
                    hl = step<MODE>(hl, ra[u][v], rb[u][v]);
                    out[v] = hl;
                    if (hf != nullptr && p + v == (REV ? 0 : L - 1)) hf[row] = hl;
                }
                store_row<T, V>(VEC, yrow, p, L, out);
            }
            h = tA * h + tB;
        }
    }
    if (PASS1 && threadIdx.x == 0) {
        aggA[row * nchunks + lc] = gA;
        aggB[row * nchunks + lc] = gB;
    }
}

// Adjoint of the forward recurrence, a reverse scan with the decays shifted by one:
//   lam[t] = g[t] + conj(a[t+1]) * lam[t+1]   (lam[L-1] = g[L-1] + lam_in)
//   db[t] = lam[t];  da[t] = lam[t] * conj(h[t-1]) (h[-1] = h0);  dh0 = conj(a[0]) * lam[0].
// a[t+1] of a lane's last element comes from the next lane by shuffle; lane 31
// loads it (one scalar load per segment). h[t-1] of a lane's first element comes
// from the previous lane; lane 0 loads it.
template <typename T>
__device__ __forceinline__ void bwd_body(const T* __restrict__ a, long long a_rs,
                                         const T* __restrict__ g, long long g_rs,
                                         const T* __restrict__ hh, long long h_rs,
                                         const T* __restrict__ h0,
                                         T* __restrict__ db, long long db_rs,
                                         T* __restrict__ da, long long da_rs,
                                         T* __restrict__ dh0, const T* __restrict__ lin,
                                         T* __restrict__ aggA, T* __restrict__ aggB,
                                         long long L, long long tpc, int nchunks, int flags) {
    const bool AT = flags & F_AT;
    const bool VEC = flags & F_VEC;
    const bool PASS1 = flags & F_PASS1;
    constexpr int V = vlen<T>::value;
    constexpr int U = uvec<T>::value;
    constexpr long long TILE = (long long)NT * U * V;
    constexpr int WSPAN = 32 * V * U;
    __shared__ __align__(16) unsigned char smem[2 * NW * 2 * sizeof(T)];
    Slots<T, T> s{reinterpret_cast<T*>(smem), reinterpret_cast<T*>(smem + 2 * NW * sizeof(T))};

    const long long row = blockIdx.x / nchunks;
    const int chunk = (int)(blockIdx.x % nchunks);
    const int lc = nchunks - 1 - chunk;
    const long long ntiles = (L + TILE - 1) / TILE;
    const long long t_lo = (long long)chunk * tpc;
    const long long t_hi = t_lo + tpc < ntiles ? t_lo + tpc : ntiles;
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const T* __restrict__ arow = a + row * a_rs;
    const T* __restrict__ grow = g + row * g_rs;
    T ac = T(1);
    if (!AT) ac = arow[0];
    T lam = T(0);
    if (!PASS1) lam = lin[row * nchunks + lc];
    T gA = T(1);
    T gB = T(0);
    int buf = 0;
    for (long long k = 0; k < t_hi - t_lo; ++k) {
        const long long tile = t_hi - 1 - k;
        const long long base = tile * TILE + w * WSPAN + lane * V;
        T A[U][V];
        T B[U][V];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const long long p = base + u * 32 * V;
            load_row<T, V>(VEC, grow, p, L, T(0), B[u]);
            if (AT) {
                load_row<T, V>(VEC, arow, p, L, T(1), A[u]);
                T nxt = shfl_down_(A[u][0], 1);
                if (lane == 31) {
                    nxt = T(1);
                    if (p + V < L) nxt = arow[p + V];
                }
#pragma unroll
                for (int j = 0; j < V - 1; ++j) A[u][j] = conj_(A[u][j + 1]);
                A[u][V - 1] = conj_(nxt);
            } else {
#pragma unroll
                for (int j = 0; j < V; ++j) A[u][j] = pick(p + j + 1 < L, conj_(ac), T(1));
            }
        }
        T preA[U], preB[U];
        T wA, wB, tA, tB;
        tile_scan<T, T, U, V, true>(A, B, preA, preB, s, buf, wA, wB, tA, tB);
        buf ^= 1;
        if (PASS1) {
            gB = tA * gB + tB;
            gA = tA * gA;
        } else {
            const T* __restrict__ hrow = hh + row * h_rs;
            T* __restrict__ dbrow = db + row * db_rs;
            T* __restrict__ darow = da + row * da_rs;
            const T lw = wA * lam + wB;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const long long p = base + u * 32 * V;
                T lv = preA[u] * lw + preB[u];
                T outb[V];
                T outa[V];
                T hv[V];
#pragma unroll
                for (int j = 0; j < V; ++j) hv[j] = T(0);
                T hp0 = T(0);
                if (AT) {
                    load_row<T, V>(VEC, hrow, p, L, T(0), hv);
                    hp0 = shfl_up_(hv[V - 1], 1);
                    if (lane == 0) {
                        hp0 = T(0);
                        if (p == 0) hp0 = h0[row];
                        else if (p - 1 < L) hp0 = hrow[p - 1];
                    }
                }
#pragma unroll
                for (int j = 0; j < V; ++j) {
                    const int v = V - 1 - j;
                    lv = A[u][v] * lv + B[u][v];
                    outb[v] = lv;
                    outa[v] = lv * conj_(v > 0 ? hv[v > 0 ? v - 1 : 0] : hp0);
                    if (dh0 != nullptr && p + v == 0) dh0[row] = conj_(AT ? arow[0] : ac) * lv;
                }
                store_row<T, V>(VEC, dbrow, p, L, outb);
                if (AT) store_row<T, V>(VEC, darow, p, L, outa);
            }
            lam = tA * lam + tB;
        }
    }
    if (PASS1 && threadIdx.x == 0) {
        aggA[row * nchunks + lc] = gA;
        aggB[row * nchunks + lc] = gB;
    }
}

// Pass 2: the state entering each chunk, hin[c] (logical order), from h0 and the
// chunk aggregates; one block per row, tile_scan over groups of NT*4 chunks.
template <typename T, typename TA>
__device__ __forceinline__ void carry_body(const TA* __restrict__ aggA,
                                           const T* __restrict__ aggB,
                                           const T* __restrict__ h0, T* __restrict__ hin,
                                           int nchunks) {
    constexpr int V = 4;
    __shared__ __align__(16) unsigned char smem[2 * NW * (sizeof(TA) + sizeof(T))];
    Slots<TA, T> s{reinterpret_cast<TA*>(smem), reinterpret_cast<T*>(smem + 2 * NW * sizeof(TA))};
    const long long row = blockIdx.x;
    const TA* __restrict__ ga = aggA + row * nchunks;
    const T* __restrict__ gb = aggB + row * nchunks;
    T* __restrict__ out = hin + row * nchunks;
    T h = h0[row];
    int buf = 0;
    for (int base0 = 0; base0 < nchunks; base0 += NT * V) {
        const int p = base0 + threadIdx.x * V;
        TA A[1][V];
        T B[1][V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
            A[0][j] = TA(1);
            B[0][j] = T(0);
            if (p + j < nchunks) {
                A[0][j] = ga[p + j];
                B[0][j] = gb[p + j];
            }
        }
        TA preA[1];
        T preB[1];
        TA wA, tA;
        T wB, tB;
        tile_scan<T, TA, 1, V, false>(A, B, preA, preB, s, buf, wA, wB, tA, tB);
        buf ^= 1;
        T hl = preA[0] * (wA * h + wB) + preB[0];
#pragma unroll
        for (int j = 0; j < V; ++j) {
            if (p + j < nchunks) out[p + j] = hl;
            hl = A[0][j] * hl + B[0][j];
        }
        h = tA * h + tB;
    }
}

}  // namespace iirssm
