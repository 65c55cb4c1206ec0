"""The IIR cascade's lane loops for real dtypes, written as explicit vector code.

What :func:`cascade_block` computes is what ``iir._make_shared``'s generated
bodies compute: one or two consecutive sections of order ``K`` (shared
coefficients) over the samples of a block and a job's lanes, from rows of ``src``
to rows of ``dst`` (the same array for the in-place block buffer), with the
operations of ``iir._section_lines`` in the same order and the same fused
multiply-adds (``tests/test_iir_kernel.py`` compares the two bit for bit).

Why it exists: compiled from Python, the loop over the lanes is the inner loop
and the states live in memory: every sample loads and stores every state of
every lane (for two second-order sections, 5 loads and 5 stores per vector and
12 arithmetic operations). Here the lanes are split into groups of ``U``
vectors, and each group runs all of the block's samples with its states in
registers: per sample and vector one load of the input, one store of the output
and the arithmetic. In cache, on one thread, that took 0.79-0.91x the time of
the generated loops (``docs/performance.md``, "Axis 0"). Each group reads the
block's rows again, though, which costs more than it saves where the rows come
from memory: the kernel uses it between ``x`` and ``out`` only where one group
holds all of a job's lanes (``iir._make_dispatch``).

Vectors are as wide as the target's registers (:func:`~._vecir.host_vector_bits`);
``U`` is the largest of 4, 2, 1 whose states fill at most half the vector
registers. The lanes ``n`` need not be a multiple of anything: groups of ``U``
vectors, then of fewer, and the last partial vector with masked loads and stores
(the lanes past ``n`` of ``src``/``dst`` are neither read nor written).
"""

from llvmlite import ir
from numba.core import cgutils
from numba.core import types
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._vecir import VecIR, host_vector_bits, host_vector_registers

__all__ = ["cascade_block", "group_vectors", "group_lanes"]


def group_vectors(n_states: int) -> int:
    """Vectors per lane group: the largest of 4, 2, 1 whose ``n_states`` states per
    lane fill at most half of the target's vector registers (the rest hold the
    coefficients and the values in flight)."""
    u = 4
    while u > 1 and u * n_states > host_vector_registers() // 2:
        u //= 2
    return u


def group_lanes(bitwidth: int, n_states: int) -> int:
    """Lanes of one full group of :func:`cascade_block` for a real dtype of
    ``bitwidth`` bits and ``n_states`` states per lane."""
    return group_vectors(n_states) * (host_vector_bits() // bitwidth)


def _is_array2(t):
    return isinstance(t, types.Array) and t.ndim == 2 and isinstance(t.dtype, types.Float)


@intrinsic
def cascade_block(typingctx, sec, src, rs, cs, dst, rd, cd, nt, n, cf, tv, pf, spec, G):
    """Sections of order ``K`` over samples ``j < nt`` and lanes ``k < n``, in kernels only.

    ``G`` (a literal 1 or 2) consecutive sections; their states are rows
    ``g·K + i`` of ``sec`` (lane ``k`` in column ``k``), read before and written
    after; their coefficients, shared by the lanes, are ``cf[j·tv, g·(2K+1) + i]``
    (b0..bK, a1..aK), so ``tv`` is 0 for fixed coefficients and 1 for one row per
    sample. Sample ``j`` reads ``src[rs + j, cs + k]`` and writes
    ``dst[rd + j, cd + k]``. ``spec``: ``iir.cascade_spec(K, lf)`` (its type gives
    ``K`` and the summing order). ``pf``: ``(bx, sx, bo, so, lines, jmax)``: for
    each ``j < jmax``, prefetch ``lines`` 64-byte lines from address ``bx + j·sx``
    (for reading) and ``bo + j·so`` (for writing), at sample ``j`` of one of the
    groups of ``U`` vectors (``j`` modulo their number: spread over the block).

    All arrays 2-D with contiguous rows, of one real dtype; ``sec`` needs columns
    up to ``n`` rounded up to the vector width. The caller guarantees the indices
    are inside the arrays (no bounds check).
    """
    if not (all(_is_array2(a) for a in (sec, src, dst, cf))
            and len({a.dtype for a in (sec, src, dst, cf)}) == 1
            and sec.mutable and dst.mutable):
        return None
    if not (all(isinstance(i, types.Integer) for i in (rs, cs, rd, cd, nt, n, tv))
            and isinstance(pf, types.UniTuple) and pf.count == 6
            and isinstance(pf.dtype, types.Integer)
            and isinstance(spec, types.UniTuple) and 1 <= spec.count <= 8
            and isinstance(spec.dtype, (types.Integer, types.Float))
            and isinstance(G, types.IntegerLiteral) and G.literal_value in (1, 2)):
        return None
    fty = sec.dtype
    K = spec.count
    lf = isinstance(spec.dtype, types.Integer)
    NG = G.literal_value
    VW = host_vector_bits() // fty.bitwidth
    U = group_vectors(NG * K)
    NC = 2 * K + 1
    isz = fty.bitwidth // 8
    sig = types.none(sec, src, rs, cs, dst, rd, cd, nt, n, cf, tv, pf, spec, G)

    def codegen(context, builder, signature, args):
        at = signature.args
        v = VecIR(context, builder, fty, VW)
        i8p = ir.IntType(8).as_pointer()
        elp = v.el.as_pointer()
        c64 = v.c64
        arr = {name: make_array(at[i])(context, builder, args[i])
               for i, name in ((0, "sec"), (1, "src"), (4, "dst"), (9, "cf"))}

        def bytes_of(a):
            return builder.bitcast(arr[a].data, i8p)

        def strides(a):
            return cgutils.unpack_tuple(builder, arr[a].strides, 2)

        def at_byte(p, off):
            return builder.gep(p, [off])

        rs_, cs_, rd_, cd_, nt_, n_, tv_ = (v.idx(args[i]) for i in (2, 3, 5, 6, 7, 8, 10))
        bx, sx, bo, so, lines, jmax = (v.idx(x) for x in
                                       cgutils.unpack_tuple(builder, args[11], 6))
        sec_b, src_b, dst_b, cf_b = (bytes_of(a) for a in ("sec", "src", "dst", "cf"))
        sec_s0 = strides("sec")[0]
        src_s0 = strides("src")[0]
        dst_s0 = strides("dst")[0]
        cf_s0, cf_s1 = strides("cf")
        pre = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, v.i32, v.i32, v.i32]),
            "llvm.prefetch.p0")
        # the states of one group: G·K rows x U vectors, registers after mem2reg
        slots = [[cgutils.alloca_once(builder, v.vty) for _ in range(U)]
                 for _ in range(NG * K)]
        g0 = cgutils.alloca_once_value(builder, c64(0))

        def coef(row, g, i):
            off = builder.add(builder.mul(row, cf_s0),
                              builder.mul(c64(g * NC + i), cf_s1))
            p = builder.bitcast(at_byte(cf_b, off), elp)
            return v.splat(builder.load(p))

        def coefs(row):
            c = [[coef(row, g, i) for i in range(NC)] for g in range(NG)]
            # lfilter's order subtracts a·y with a fused multiply-add of -a
            neg = [[builder.fneg(c[g][K + 1 + i]) for i in range(K)] for g in range(NG)]
            return c, neg

        def sections(vals, c, neg, nu):
            for g in range(NG):
                cg, ng = c[g], neg[g]
                for u in range(nu):
                    x = vals[u]
                    z = [builder.load(slots[g * K + i][u]) for i in range(K)]
                    y = v.call_fma(cg[0], x, z[0])
                    nz = []
                    for i in range(K - 1):
                        if lf:      # z[i+1] + b[i+1]·x - a[i+1]·y
                            nz.append(v.call_fma(ng[i], y, v.call_fma(cg[i + 1], x, z[i + 1])))
                        else:       # b[i+1]·x - a[i+1]·y + z[i+1]
                            p = builder.fmul(cg[K + 1 + i], y)
                            nz.append(builder.fadd(v.call_fma(cg[i + 1], x, builder.fneg(p)),
                                                   z[i + 1]))
                    p = builder.fmul(cg[2 * K], y)                    # b[K]·x - a[K]·y
                    nz.append(v.call_fma(cg[K], x, builder.fneg(p)))
                    for i in range(K):
                        builder.store(nz[i], slots[g * K + i][u])
                    vals[u] = y
            return vals

        def state_ptr(r, lane):
            off = builder.add(builder.mul(c64(r), sec_s0), builder.mul(lane, c64(isz)))
            return builder.bitcast(at_byte(sec_b, off), v.vty.as_pointer())

        def prefetch(j):
            with cgutils.for_range(builder, lines) as ln:
                m = builder.mul(ln.index, c64(64))
                for base, step, rw in ((bx, sx, 0), (bo, so, 1)):
                    a = builder.add(builder.add(base, builder.mul(j, step)), m)
                    builder.call(pre, [builder.inttoptr(a, i8p), v.i32(rw), v.i32(3), v.i32(1)])

        def run_group(nu, masks):
            """Lanes ``g0 .. g0 + nu·VW`` (the vectors masked by ``masks``, if given) over
            all samples; a full group of ``U`` vectors also issues its share of the
            prefetches."""
            lane0 = builder.load(g0)
            # the prefetches spread over the groups of U vectors: group gi asks for the
            # rows j = gi (mod npf) (all of them if there is no full group)
            gi = builder.sdiv(lane0, c64(U * VW))
            npf = builder.sdiv(n_, c64(U * VW))
            npf = builder.select(builder.icmp_signed(">", npf, c64(0)), npf, c64(1))
            mine = builder.icmp_signed("<", gi, npf)
            for r in range(NG * K):
                for u in range(nu):
                    lane = builder.add(lane0, c64(u * VW))
                    builder.store(v.load_at(state_ptr(r, lane)), slots[r][u])
            fixed = builder.icmp_signed("==", tv_, c64(0))

            def samples(c0):
                with cgutils.for_range(builder, nt_) as loop:
                    j = loop.index
                    do_pf = builder.and_(
                        builder.and_(mine, builder.icmp_signed("<", j, jmax)),
                        builder.icmp_signed("==", builder.srem(j, npf), gi))
                    with builder.if_then(do_pf, likely=False):
                        prefetch(j)
                    c, neg = c0 if c0 is not None else coefs(builder.mul(j, tv_))
                    soff = builder.add(builder.mul(builder.add(rs_, j), src_s0),
                                       builder.mul(builder.add(cs_, lane0), c64(isz)))
                    doff = builder.add(builder.mul(builder.add(rd_, j), dst_s0),
                                       builder.mul(builder.add(cd_, lane0), c64(isz)))
                    sp = [builder.bitcast(at_byte(src_b, builder.add(soff, c64(u * VW * isz))),
                                          v.vty.as_pointer()) for u in range(nu)]
                    dp = [builder.bitcast(at_byte(dst_b, builder.add(doff, c64(u * VW * isz))),
                                          v.vty.as_pointer()) for u in range(nu)]
                    if masks is None:
                        vals = [v.load_at(p) for p in sp]
                    else:
                        vals = [v.masked_load_at(p, m) for p, m in zip(sp, masks)]
                    vals = sections(vals, c, neg, nu)
                    for u in range(nu):
                        if masks is None:
                            v.store_at(vals[u], dp[u])
                        else:
                            v.masked_store_at(vals[u], dp[u], masks[u])

            with builder.if_else(fixed) as (then, otherwise):
                with then:
                    samples(coefs(c64(0)))
                with otherwise:
                    samples(None)
            for r in range(NG * K):
                for u in range(nu):
                    lane = builder.add(lane0, c64(u * VW))
                    v.store_at(builder.load(slots[r][u]), state_ptr(r, lane))
            builder.store(builder.add(lane0, c64(nu * VW)), g0)

        # groups of U vectors, then of U/2, ..., 1 (at most one each), then the rest masked
        nu = U
        while nu >= 1:
            count = builder.sdiv(builder.sub(n_, builder.load(g0)), c64(nu * VW))
            with cgutils.for_range(builder, count):
                run_group(nu, None)
            nu //= 2
        rem = builder.sub(n_, builder.load(g0))
        with builder.if_then(builder.icmp_signed(">", rem, c64(0))):
            run_group(1, [v.mask(rem)])
        return context.get_dummy_value()

    return sig, codegen
