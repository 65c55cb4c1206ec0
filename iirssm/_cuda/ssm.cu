// DiagonalSSM.filter on the GPU: a fused bank of complex first-order modes.
//   g_m[t] = lam_m g_m[t-1] + beta_m u[t]    (g = h / gain: the CPU's scaled states)
//   y[t]   = Re(sum_m w_m g_m[t]) + D u[t]    (T real: a real system on a real signal,
//                                              conjugate pairs computed once, w doubled)
//   y[t]   = sum_m w_m g_m[t] + D u[t]        (T complex)
// One block per row. Per tile, u is loaded once; the modes are looped serially,
// each one a tile_scan (common.cuh) of (lam_m, beta_m u) from its carried state;
// the per-mode carries live in dynamic shared memory (2*M complex values,
// double-buffered by tile parity, written by thread 0). The output accumulates in
// registers and is written once per tile. Mode parameters (lam, beta, w) are
// (Rp, M) with Rp 1 (shared, row stride 0) or R; D is (Rd,) likewise.
// g holds the initial states on entry and the final states on exit, (R, M).
#include "common.cuh"

using namespace iirssm;

template <typename T> struct ssm_u { static constexpr int value = 2; };

template <typename T>
__global__ void __launch_bounds__(NT, 4)
ssm_fwd(const T* __restrict__ u, long long u_rs, T* __restrict__ y, long long y_rs,
        const complex<typename real_of<T>::type>* __restrict__ lam,
        const typename real_of<T>::type* __restrict__ beta,
        const complex<typename real_of<T>::type>* __restrict__ wgt, long long p_rs,
        const T* __restrict__ D, long long d_rs,
        complex<typename real_of<T>::type>* __restrict__ g, int M, long long L, int flags) {
    typedef typename real_of<T>::type R_;
    typedef complex<R_> C;
    constexpr int V = vlen<T>::value;
    constexpr int U = ssm_u<T>::value;
    constexpr long long TILE = (long long)NT * U * V;
    constexpr int WSPAN = 32 * V * U;
    const bool VEC = flags & 2;
    __shared__ __align__(16) unsigned char smem[2 * NW * 2 * sizeof(C)];
    extern __shared__ __align__(16) unsigned char dsm[];
    Slots<C, C> s{reinterpret_cast<C*>(smem), reinterpret_cast<C*>(smem + 2 * NW * sizeof(C))};
    C* gcar = reinterpret_cast<C*>(dsm);   // [2][M]

    const long long row = blockIdx.x;
    const int lane = threadIdx.x & 31;
    const int w = threadIdx.x >> 5;
    const T* __restrict__ urow = u + row * u_rs;
    T* __restrict__ yrow = y + row * y_rs;
    const C* __restrict__ lr = lam + row * p_rs;
    const R_* __restrict__ br = beta + row * p_rs;
    const C* __restrict__ wr = wgt + row * p_rs;
    const T d = D[row * d_rs];
    for (int m = threadIdx.x; m < M; m += NT) gcar[m] = g[row * M + m];
    __syncthreads();
    const long long ntiles = (L + TILE - 1) / TILE;
    int buf = 0;
    for (long long k = 0; k < ntiles; ++k) {
        const long long base = k * TILE + w * WSPAN + lane * V;
        const int cur = (int)(k & 1);
        T ru[U][V];
        C acc[U][V];
#pragma unroll
        for (int q = 0; q < U; ++q) {
            load_row<T, V>(VEC, urow, base + q * 32 * V, L, T(0), ru[q]);
#pragma unroll
            for (int j = 0; j < V; ++j) acc[q][j] = C(0);
        }
        for (int m = 0; m < M; ++m) {
            const C lm = lr[m];
            const R_ bm = br[m];
            const C wm = wr[m];
            C A[U][V];
            C B[U][V];
#pragma unroll
            for (int q = 0; q < U; ++q)
#pragma unroll
                for (int j = 0; j < V; ++j) {
                    A[q][j] = pick(base + q * 32 * V + j < L, lm, C(1));
                    B[q][j] = C(ru[q][j] * bm);
                }
            C preA[U], preB[U];
            C wA, wB, tA, tB;
            tile_scan<C, C, U, V, false>(A, B, preA, preB, s, buf, wA, wB, tA, tB);
            buf ^= 1;
            const C h = gcar[cur * M + m];
            const C hw = wA * h + wB;
#pragma unroll
            for (int q = 0; q < U; ++q) {
                C hl = preA[q] * hw + preB[q];
#pragma unroll
                for (int j = 0; j < V; ++j) {
                    hl = lm * hl + B[q][j];
                    acc[q][j] = acc[q][j] + wm * hl;
                }
            }
            if (threadIdx.x == 0) gcar[(1 - cur) * M + m] = tA * h + tB;
        }
#pragma unroll
        for (int q = 0; q < U; ++q) {
            T out[V];
#pragma unroll
            for (int j = 0; j < V; ++j) {
                if constexpr (is_cplx<T>::value) out[j] = acc[q][j] + d * ru[q][j];
                else out[j] = acc[q][j].real() + d * ru[q][j];
            }
            store_row<T, V>(VEC, yrow, base + q * 32 * V, L, out);
        }
    }
    __syncthreads();
    const int fin = (int)(ntiles & 1);
    for (int m = threadIdx.x; m < M; m += NT) g[row * M + m] = gcar[fin * M + m];
}
