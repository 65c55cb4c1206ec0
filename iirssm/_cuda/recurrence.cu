// The generic first-order recurrence h[t] = a[t]*h[t-1] + b[t] over rows, its
// reverse-time form and its adjoint (backward). Templates over
// T in {float, double, complex<float>, complex<double>}:
//   rec_fwd<T, REV>   the row scan (flags & F_PASS1: pass 1 of the split path,
//                     chunk aggregates only); writes y and hf
//   rec_bwd<T>        the adjoint: db (= lam), da (F_AT only), dh0; pass 1 likewise
//   carry_scan<T, T>  pass 2 of the split path (both directions; logical order)
// REV: run time backwards (linear_recurrence(reverse=True)). Run-time flags
// (scan.cuh): F_AT (a varies in time, else one value per row), F_VEC (aligned
// rows: 16-byte vector accesses), F_PASS1.
#include "scan.cuh"

using namespace iirssm;

template <typename T, bool REV>
__global__ void __launch_bounds__(NT, min_blocks<T>::value)
rec_fwd(const T* a, long long a_rs, const T* b, long long b_rs, T* y, long long y_rs,
        const T* hin, T* hf, T* aggA, T* aggB, long long L, long long tpc, int nchunks,
        int flags) {
    fwd_body<T, T, REV ? M_RREV : M_REC>(a, a_rs, b, b_rs, y, y_rs, hin, hf, aggA, aggB, L, tpc,
                                         nchunks, flags);
}

template <typename T>
__global__ void __launch_bounds__(NT, min_blocks<T>::value)
rec_bwd(const T* a, long long a_rs, const T* g, long long g_rs, const T* h, long long h_rs,
        const T* h0, T* db, long long db_rs, T* da, long long da_rs, T* dh0, const T* lin,
        T* aggA, T* aggB, long long L, long long tpc, int nchunks, int flags) {
    bwd_body<T>(a, a_rs, g, g_rs, h, h_rs, h0, db, db_rs, da, da_rs, dh0, lin, aggA, aggB, L, tpc,
                nchunks, flags);
}

template <typename T, typename TA>
__global__ void __launch_bounds__(NT)
carry_scan(const TA* aggA, const T* aggB, const T* h0, T* hin, int nchunks) {
    carry_body<T, TA>(aggA, aggB, h0, hin, nchunks);
}
