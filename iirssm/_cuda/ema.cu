// Exponential moving average in the EMA form h[t] = h[t-1] + c[t]*(x[t] - h[t-1]),
// i.e. the element (1 - c, c*x), over rows. c is real (TA), x real or complex (T):
//   ema_fwd<T, TA>    the row scan (flags & F_PASS1: chunk aggregates only)
//   carry_scan<T, TA> pass 2 of the split path
// F_AT: c varies in time (time-varying alpha, times=, the adjust=True gains
// 1/W[t]); else one value per row. The same tile scan as recurrence.cu (scan.cuh):
// the scan carries the real decay product A = prod(1 - c) beside B.
#include "scan.cuh"

using namespace iirssm;

template <typename T, typename TA>
__global__ void __launch_bounds__(NT, min_blocks<T>::value)
ema_fwd(const TA* c, long long c_rs, const T* x, long long x_rs, T* y, long long y_rs,
        const T* hin, T* hf, TA* aggA, T* aggB, long long L, long long tpc, int nchunks,
        int flags) {
    fwd_body<T, TA, M_EMA>(c, c_rs, x, x_rs, y, y_rs, hin, hf, aggA, aggB, L, tpc, nchunks,
                           flags);
}

template <typename T, typename TA>
__global__ void __launch_bounds__(NT)
carry_scan(const TA* aggA, const T* aggB, const T* h0, T* hin, int nchunks) {
    carry_body<T, TA>(aggA, aggB, h0, hin, nchunks);
}
