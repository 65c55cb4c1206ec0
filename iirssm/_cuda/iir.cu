// IIR filtering (lfilter / sosfilt) on the GPU.
//
// Fixed coefficients (constant in time, shared or per channel) run as
//   y = (1 / A(z)) (B(z) x + zi),
// i.e. the numerator first (fir_rows: an FIR with the DF2T initial state injected
// as u[t] += zi[t] for t < K), then one first-order recurrence per pole of A
// (recurrence.cu's row scans, complex for complex poles: a cascade of first-order
// sections, factored on the host). Exact for linear time-invariant filters; the
// DF2T state zi/zf is mapped at the ends (see dispatch.py).
//
// Time-varying coefficients run df2t_serial: the direct form II transposed loop of
// scipy, one thread per signal (parallel over signals only; K <= KMAX states in
// registers). Coefficients are normalised by a0 beforehand.
#include "common.cuh"

using namespace iirssm;

// u[r, t] = sum_{k < K1, k <= t} b[r, k] x[r, t - k]  (+ zi[r, t] for t < K1 - 1)
template <typename T>
__global__ void __launch_bounds__(256)
fir_rows(const T* __restrict__ x, long long x_rs, const T* __restrict__ b, long long b_rs,
         int K1, const T* __restrict__ zi, T* __restrict__ u, long long u_rs, long long L,
         long long R) {
    const long long n = R * L;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long r = idx / L;
        const long long t = idx - r * L;
        const T* __restrict__ xr = x + r * x_rs;
        const T* __restrict__ br = b + r * b_rs;
        T acc = T(0);
        for (int k = 0; k < K1 && k <= t; ++k) acc = acc + br[k] * xr[t - k];
        if (zi != nullptr && t < K1 - 1) acc = acc + zi[r * (K1 - 1) + t];
        u[r * u_rs + t] = acc;
    }
}

// scipy's DF2T, time-varying: y[t] = b0[t] x[t] + z0;
// z_i = z_{i+1} + b_{i+1}[t] x[t] - a_{i+1}[t] y[t]  (z_K = 0).
// Coefficient c_k of row r at time t: c[k*c_ks + r*c_rs + t*c_ts].
template <typename T, int KMAX>
__global__ void __launch_bounds__(128)
df2t_serial(const T* __restrict__ x, long long x_rs, const T* __restrict__ b,
            const T* __restrict__ a, long long c_ks, long long c_rs, long long c_ts, int K,
            const T* __restrict__ zi, T* __restrict__ zf, T* __restrict__ y, long long y_rs,
            long long L, long long R) {
    const long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= R) return;
    T z[KMAX + 1];
#pragma unroll
    for (int i = 0; i <= KMAX; ++i) {
        z[i] = T(0);
        if (i < K && zi != nullptr) z[i] = zi[r * K + i];
    }
    const T* __restrict__ xr = x + r * x_rs;
    T* __restrict__ yr = y + r * y_rs;
    const T* __restrict__ br = b + r * c_rs;
    const T* __restrict__ ar = a + r * c_rs;
    for (long long t = 0; t < L; ++t) {
        const T xt = xr[t];
        const long long ct = t * c_ts;
        const T yt = br[ct] * xt + z[0];
#pragma unroll
        for (int i = 0; i < KMAX; ++i) {
            if (i < K) {
                T nz = z[i + 1];
                if (i + 1 >= K) nz = T(0);
                z[i] = nz + br[(i + 1) * c_ks + ct] * xt - ar[(i + 1) * c_ks + ct] * yt;
            }
        }
        yr[t] = yt;
    }
    if (zf != nullptr) {
#pragma unroll
        for (int i = 0; i < KMAX; ++i)
            if (i < K) zf[r * K + i] = z[i];
    }
}
