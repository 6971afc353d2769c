## Matrix products C[b] = epilogue(A[b] @ B[b]) in two variants chosen by the device profile.
##
## Every operand is a strided view: A[b, m, k] = A[a_off + b*a_sb + m*a_sm + k*a_sk], and so on, with
## sizes and strides as kernel arguments (a new shape never recompiles). Transposed operands are
## just other strides. Rendered with `kernel` = one of:
##
##   pack      (CPU) copy a strided operand into panels dst[b][p][k][0:R] (row p*R+j of the operand,
##             zero past `rows`), so the GEMM streams contiguous memory whatever the source layout.
##   gemm_cpu  (CPU) no local memory, no barriers: one work-item keeps an MR x NR block of C in
##             vector registers (NR/VW vectors of VW lanes per row) and walks the whole K.
##             B comes packed in NR-wide panels (zero padded, so no edge checks in the K loop) or is read
##             in place (the last column block shifted left to stay inside N);
##             A is read through its strides (rows past M clamped to M-1, results discarded) or
##             packed in MR-wide panels (a_mode = "rows" | "panels").
##   gemm_gpu  (GPU) work-groups of (TN/WN) x (TM/WM) items share TM x TK and TK x TN tiles of A and B
##             in local memory; each item accumulates a WM x WN register block. Tiles past M, N
##             or K are filled with zeros, stores are bounds-checked.
##
## Epilogue (both GEMMs): C = act(alpha * (A @ B) + beta * C_old + bias[n]); alpha, beta and the bit
##   flags `epi` (EPI_BETA: read C_old, EPI_BIAS: add bias, EPI_RELU) are arguments, not render-time
##   parameters: the branches are uniform and outside the K loop, and one built kernel serves every
##   epilogue (fewer builds: a cold first training step compiles a handful of kernels, not dozens).
##   ReLU keeps NaN (as torch.relu and clnet's relu op).
## ext: () or (expr, n_tensors, n_scalars): an elementwise expression applied after that epilogue, fused in
##   by clnet.compiler (e.g. a ReLU's gradient mask): `r` is the value, e0.. are matrices read at the same
##   (m, n) (offset, row stride, unit column stride; extra arguments after `epi`), s0.. scalars.
##
## ext: ("multi", body, nt, ns, c_store, outs): a fused elementwise group run after that epilogue (clnet.compiler's
##   fuse_gemm_groups: e.g. an optimizer update of the weight whose gradient this GEMM makes, the gradient never
##   reaching memory). body: expressions u0, u1, ... in r, e<i>, s<i> and earlier u<j>; c_store: the u<j> (or "r")
##   stored into C, or None (C not stored); outs: the u<j> stored into o0, o1, ... (pointer, offset, row stride;
##   unit column stride; extra arguments after the e's and s's). e/o pointers may alias (a value read then
##   rewritten at the same element), so they are not restrict.
##
## t: storage type, acc: accumulation type (float for half storage).
#define EPI_BETA 1
#define EPI_BIAS 2
#define EPI_RELU 4
<%def name="epilogue(v, n_expr, c_ptr, m_expr)">\
<%doc> ${v}: accumulator expression (scalar), n_expr / m_expr: column / row index, c_ptr: address of C element </%doc>\
${acc} r_ = alpha * (${v});
            if (epi & EPI_BETA) r_ += beta * (${acc})${ld(t, c_ptr)};
            if (epi & EPI_BIAS) r_ += (${acc})${ld(t, "bias + bias_off + (" + n_expr + ")")};
            if (epi & EPI_RELU) r_ = r_ < (${acc})0 ? (${acc})0 : r_;
% if ext and ext[0] == "multi":
  % for j, body in enumerate(ext[1]):
            const ${acc} u${j} = (${acc})(${ext_expr(body, lambda i: "((%s)%s)" % (acc, ld(t, "e%d + e%d_off + (%s) * e%d_sm + (%s)" % (i, i, m_expr, i, n_expr))))});
  % endfor
  % if ext[4] is not None:
            ${st(t, c_ptr, ext_expr(ext[4], None))};
  % endif
  % for i, u in enumerate(ext[5]):
            ${st(t, "o%d + o%d_off + (%s) * o%d_sm + (%s)" % (i, i, m_expr, i, n_expr), u)};
  % endfor
% else:
  % if ext:
            r_ = ${ext_expr(ext[0], lambda i: "((%s)%s)" % (acc, ld(t, "e%d + e%d_off + (%s) * e%d_sm + (%s)" % (i, i, m_expr, i, n_expr))))};
  % endif
            ${st(t, c_ptr, "r_")};
% endif
</%def>\
<%def name="ext_args()">\
% if ext and ext[0] == "multi":
  % for i in range(ext[2]):
    , __global const ${t} *e${i}, const int e${i}_off, const int e${i}_sm
  % endfor
  % for i in range(ext[3]):
    , const ${acc} s${i}
  % endfor
  % for i in range(len(ext[5])):
    , __global ${t} *o${i}, const int o${i}_off, const int o${i}_sm
  % endfor
% elif ext:
  % for i in range(ext[1]):
    , __global const ${t} *restrict e${i}, const int e${i}_off, const int e${i}_sm
  % endfor
  % for i in range(ext[2]):
    , const ${acc} s${i}
  % endfor
% endif
</%def>\
<%!
import re as _re


def ext_expr(expr, load):
    """an ext expression with r -> r_, e<i> -> load(i), s<i> and u<j> kept (scalar arguments, temporaries)"""
    expr = _re.sub(r"\br\b", "r_", expr)
    return expr if load is None else _re.sub(r"\be(\d+)\b", lambda m: load(int(m.group(1))), expr)
%>\
<%!
def vld(t, w, i, p):
    """vector load of w elements of storage type t (half storage converts to float)"""
    return f"vload_half{w}({i}, {p})" if t == "half" else f"vload{w}({i}, {p})"

def vst(t, w, v, i, p):
    return f"vstore_half{w}({v}, {i}, {p})" if t == "half" else f"vstore{w}({v}, {i}, {p})"

def ld(t, p):
    """scalar load through pointer expression p (half storage converts to float)"""
    return f"vload_half(0, {p})" if t == "half" else f"(*({p}))"

def st(t, p, v):
    return f"vstore_half({v}, 0, {p})" if t == "half" else f"*({p}) = ({t})({v})"

def divc(x, d, xmax):
    """C expression for x / d (0 <= x <= xmax, d a render-time constant) without a division: a shift,
    or a multiply by a checked reciprocal. Keeps div/rem pairs away from LLVM's DivRemPairs pass, whose
    `freeze` instructions Oclgrind's uninitialized-value checker cannot run."""
    if d & (d - 1) == 0:
        return f"(({x}) >> {d.bit_length() - 1})"
    for s in range(8, 31):
        magic = -(-(1 << s) // d)
        if xmax * magic < 2**31 and all((v * magic) >> s == v // d for v in range(xmax + 1)):
            return f"((({x}) * {magic}) >> {s})"
    raise ValueError(f"no reciprocal for {d} up to {xmax}")
%>\
<%def name="pack_kernel()">\
__kernel void pack(const int rows, const int K,
                   __global const ${t} *src, const int s_off, const int s_sb, const int s_sr, const int s_sk,
                   __global ${t} *dst, const int panels)
{
    const int k = get_global_id(0), p = get_global_id(1), bt = get_global_id(2);
    if (k >= K) return;
    __global const ${t} *s = src + s_off + bt * s_sb + k * s_sk + p * ${R} * s_sr;
    __global ${t} *d = dst + ((bt * panels + p) * K + k) * ${R};
    const int left = rows - p * ${R};
  % if unit and R % VW == 0 and t != "half":
    if (left >= ${R}) {
    % for v in range(R // VW):
        vstore${VW}(vload${VW}(${v}, s), ${v}, d);
    % endfor
        return;
    }
  % endif
  % for j in range(R):
    d[${j}] = ${j} < left ? s[${j} * s_sr] : (${t})0;
  % endfor
}
</%def>\
<%def name="cpu_k_step(b_load)">\
<%doc> One k step of the CPU micro-kernel: load NR values of B (b_load(v) gives vector v), then MR FMAs
       rows. </%doc>\
<% nv = NR // VW; vt = acc + str(VW) %>\
% for v in range(nv):
            const ${vt} b${v} = ${b_load(v)};
% endfor
% for r in range(MR):
  % if a_mode == "rows":
            const ${vt} a${r}v = (${vt})(${ld(t, "a%d + %s" % (r, "k * a_sk"))});
  % else:
            const ${vt} a${r}v = (${vt})(${ld(t, "a + k * %d + %d" % (MR, r))});
  % endif
  % for v in range(nv):
            c${r}_${v} = fma(a${r}v, b${v}, c${r}_${v});
  % endfor
% endfor
</%def>\
<%def name="gemm_cpu_kernel()">\
<%
    nv = NR // VW
    vt = acc + str(VW)
    lanes = "0123456789abcdef"
    def gather(v, col):
        """vector v of B's row at b, element j read at column col(j) (strided / clamped loads)"""
        return "(%s)(%s)" % (vt, ", ".join(
            "(%s)%s" % (acc, ld(t, "b + (%s) * b_sn" % col(v * VW + j))) for j in range(VW)))
%>\
## B modes: "panels" = packed by the pack kernel (contiguous, zero padded); "direct" = read through
## b_off/b_sb/b_sk/b_sn (vector loads when b_nc, i.e. unit stride along N), columns past N clamped.
__kernel void gemm_cpu(const int M, const int N, const int K,
                       __global const ${t} *restrict A, const int a_off, const int a_sb, const int a_sm, const int a_sk,
                       __global const ${t} *restrict B, const int b_off, const int b_sb, const int b_sk, const int b_sn,
                       __global ${t} *${"" if ext and ext[0] == "multi" else "restrict "}C, const int c_off, const int c_sb, const int c_sm,
                       __global const ${t} *restrict bias, const int bias_off,
                       const ${acc} alpha, const ${acc} beta, const int epi
${ext_args()}\
                       )
{
    const int ib = get_global_id(0), jb = get_global_id(1), bt = get_global_id(2);
    const int m0 = ib * ${MR}, n0 = jb * ${NR};
    if (m0 >= M) return;
% for r in range(MR):
  % for v in range(nv):
    ${vt} c${r}_${v} = (${vt})(0);
  % endfor
% endfor
% if a_mode == "rows":
  % for r in range(MR):
    __global const ${t} *a${r} = A + a_off + bt * a_sb + min(m0 + ${r}, M - 1) * a_sm;
  % endfor
% else:
    __global const ${t} *a = A + a_off + bt * a_sb + ib * K * ${MR};
% endif
% if b_mode == "panels":
    const int ns = n0;
    __global const ${t} *b = B + bt * b_sb + jb * K * ${NR};
    for (int k = 0; k < K; ++k, b += ${NR}) {
${cpu_k_step(lambda v: vld(t, VW, v, "b"))}\
    }
% else:
    ## The last column block starts at N - NR (when N >= NR) so that it reads whole vectors like the others
    ## (gathering clamped columns made it 4x slower than them); its columns below n0 belong to the block
    ## before and are not stored here. Only N < NR gathers.
    const int ns = N >= ${NR} ? min(n0, N - ${NR}) : n0;
    __global const ${t} *b = B + b_off + bt * b_sb + ns * b_sn;
    if (ns + ${NR} <= N) {
        for (int k = 0; k < K; ++k, b += b_sk) {
  % if b_nc:
${cpu_k_step(lambda v: vld(t, VW, v, "b"))}\
  % else:
${cpu_k_step(lambda v: gather(v, lambda j: str(j)))}\
  % endif
        }
    } else {
        const int last = N - 1 - ns;
        for (int k = 0; k < K; ++k, b += b_sk) {
${cpu_k_step(lambda v: gather(v, lambda j: "min(%d, last)" % j))}\
        }
    }
% endif
    __global ${t} *c = C + c_off + bt * c_sb + m0 * c_sm + ns;
    if (ns == n0 && m0 + ${MR} <= M && n0 + ${NR} <= N) {
        const ${vt} al = (${vt})(alpha), be = (${vt})(beta);
% for v in range(nv):
        const ${vt} bi${v} = (epi & EPI_BIAS) ? ${vld(t, VW, v, "bias + bias_off + n0")} : (${vt})(0);
% endfor
% for r in range(MR):
  % for v in range(nv):
        {
            ${vt} r_ = al * c${r}_${v};
            if (epi & EPI_BETA) r_ = fma(be, ${vld(t, VW, v, "c + %d * c_sm" % r)}, r_);
            r_ += bi${v};
            if (epi & EPI_RELU) r_ = select(r_, (${vt})(0), r_ < (${vt})(0));
  % if ext and ext[0] == "multi":
    % for j, body in enumerate(ext[1]):
            const ${vt} u${j} = ${ext_expr(body, lambda i: vld(t, VW, v, "e%d + e%d_off + (m0 + %d) * e%d_sm + n0" % (i, i, r, i)))};
    % endfor
    % if ext[4] is not None:
            ${vst(t, VW, ext_expr(ext[4], None), v, "c + %d * c_sm" % r)};
    % endif
    % for i, u in enumerate(ext[5]):
            ${vst(t, VW, u, v, "o%d + o%d_off + (m0 + %d) * o%d_sm + n0" % (i, i, r, i))};
    % endfor
  % else:
    % if ext:
            r_ = ${ext_expr(ext[0], lambda i: vld(t, VW, v, "e%d + e%d_off + (m0 + %d) * e%d_sm + n0" % (i, i, r, i)))};
    % endif
            ${vst(t, VW, "r_", v, "c + %d * c_sm" % r)};
  % endif
        }
  % endfor
% endfor
    } else {
        ## Edge block: spill the accumulators to private memory and store the rows < M, columns < N
        ## in a loop (a fully unrolled edge store would multiply the kernel's code and build time).
        ${acc} tile[${MR}][${NR}];
% for r in range(MR):
  % for v in range(nv):
        vstore${VW}(c${r}_${v}, ${v}, tile[${r}]);
  % endfor
% endfor
        const int rows = min(${MR}, M - m0), cols = min(${NR}, N - ns);
        for (int r = 0; r < rows; ++r) {
            for (int j = n0 - ns; j < cols; ++j) {
            ${epilogue("tile[r][j]", "ns + j", "c + r * c_sm + j", "m0 + r")}\
            }
        }
    }
}
</%def>\
<%def name="gemm_gpu_kernel()">\
<%
    RM = TM // WM   # work-items along m
    RN = TN // WN   # work-items along n
    NT = RM * RN    # work-items per group
%>\
__kernel __attribute__((reqd_work_group_size(${RN}, ${RM}, 1)))
void gemm_gpu(const int M, const int N, const int K,
              __global const ${t} *restrict A, const int a_off, const int a_sb, const int a_sm, const int a_sk,
              __global const ${t} *restrict B, const int b_off, const int b_sb, const int b_sk, const int b_sn,
              __global ${t} *${"" if ext and ext[0] == "multi" else "restrict "}C, const int c_off, const int c_sb, const int c_sm,
              __global const ${t} *restrict bias, const int bias_off,
              const ${acc} alpha, const ${acc} beta, const int epi
${ext_args()}\
              )
{
    __local ${acc} As[${TK}][${TM + 1}];
    __local ${acc} Bs[${TK}][${TN + 1}];
    const int tx = get_local_id(0), ty = get_local_id(1), tid = ty * ${RN} + tx;
    const int n0 = get_group_id(0) * ${TN}, m0 = get_group_id(1) * ${TM}, bt = get_global_id(2);
    A += a_off + bt * a_sb;
    B += b_off + bt * b_sb;
% for i in range(WM):
  % for j in range(WN):
    ${acc} c${i}_${j} = 0;
  % endfor
% endfor
    for (int k0 = 0; k0 < K; k0 += ${TK}) {
        ## Cooperative tile loads; consecutive work-items read consecutive addresses of the source
        ## (along k when a_kc, along m otherwise), out-of-range elements become 0.
% for i in range(-(-TM * TK // NT)):
        {
            const int e = tid + ${i * NT};
  % if (i + 1) * NT > TM * TK:
            if (e < ${TM * TK}) {
  % else:
            {
  % endif
  % if a_kc:
                const int mm = ${divc("e", TK, (i + 1) * NT)}, kk = e - mm * ${TK};
  % else:
                const int kk = ${divc("e", TM, (i + 1) * NT)}, mm = e - kk * ${TM};
  % endif
                const int gm = m0 + mm, gk = k0 + kk;
                As[kk][mm] = (gm < M && gk < K) ? (${acc})${ld(t, "A + gm * a_sm + gk * a_sk")} : (${acc})0;
            }
        }
% endfor
% for i in range(-(-TN * TK // NT)):
        {
            const int e = tid + ${i * NT};
  % if (i + 1) * NT > TN * TK:
            if (e < ${TN * TK}) {
  % else:
            {
  % endif
  % if b_nc:
                const int kk = ${divc("e", TN, (i + 1) * NT)}, nn = e - kk * ${TN};
  % else:
                const int nn = ${divc("e", TK, (i + 1) * NT)}, kk = e - nn * ${TK};
  % endif
                const int gn = n0 + nn, gk = k0 + kk;
                Bs[kk][nn] = (gn < N && gk < K) ? (${acc})${ld(t, "B + gk * b_sk + gn * b_sn")} : (${acc})0;
            }
        }
% endfor
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < ${TK}; ++kk) {
% for i in range(WM):
            const ${acc} a${i} = As[kk][ty + ${i * RM}];
% endfor
% for j in range(WN):
            const ${acc} b${j} = Bs[kk][tx + ${j * RN}];
% endfor
% for i in range(WM):
  % for j in range(WN):
            c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});
  % endfor
% endfor
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    C += c_off + bt * c_sb;
% for i in range(WM):
    if (m0 + ty + ${i * RM} < M) {
  % for j in range(WN):
        if (n0 + tx + ${j * RN} < N) {
            const int gm = m0 + ty + ${i * RM}, gn = n0 + tx + ${j * RN};
            ${epilogue("c%d_%d" % (i, j), "gn", "C + gm * c_sm + gn", "gm")}\
        }
  % endfor
    }
% endfor
}
</%def>\
% if kernel == "pack":
${pack_kernel()}
% elif kernel == "gemm_cpu":
${gemm_cpu_kernel()}
% elif kernel == "gemm_gpu":
${gemm_gpu_kernel()}
% endif
