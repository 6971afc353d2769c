## Scaled dot-product attention, fused: softmax(scale * q k^T + mask) v without materialising the
## (L, S) score matrix, by the online softmax (a running maximum m and sum l, the output accumulator
## rescaled whenever m grows), as FlashAttention does; the backward recomputes the scores from q, k and
## the saved log-sum-exp of each query row.
##
## q: (BH, L, E), k: (BH, S, E), v: (BH, S, EV), contiguous; out: (BH, L, EV); lse: (BH, L) (acc type).
## One work-item per query row (forward, backward_dq) or per key row (backward_dkv): its q (or k and v)
## row and its accumulators live in private arrays of E / EV values (template constants: the head sizes).
## Neighbouring work-items read the same key rows at the same time (one broadcast read on GPUs).
##
##   kernel     forward | backward_dq | backward_dkv
##   t, acc     storage and arithmetic C types
##   E, EV      head sizes of q/k and of v
##   causal     key j is seen by query i only when j <= i (PyTorch's is_causal: tril(ones(L, S)))
##   masked     an additive float mask: mask[b1 * mb1 + b2 * mb2 + i * mi + j * mj], with bh = b1 * NB2 + b2
##              (strides in elements, 0 where the mask broadcasts), -inf masking a key out
##
## A query row that every key is masked out of gets 0 (and zero gradients), as PyTorch 2.13 does.
## Every input buffer comes with an element offset (views need no copy); outputs are new (offset 0).
## backward_dq also writes D[row] = sum(dout * out) of its row, which backward_dkv reads: launch dq first.
<%page args="kernel, t, acc, E, EV, causal=False, masked=False"/>
<%
def ld(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"

def st(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte(({acc})({val}), {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"
%>\
<%def name="mask_args()">\
% if masked:
                        __global const ${t} *mask, const int mask_off, const int NB2, const int mb1, const int mb2,
                        const int mi, const int mj,
% endif
</%def>\
<%def name="score(i, j)">\
        ${acc} s = 0;
        for (int e = 0; e < ${E}; e++) s += qr[e] * ${ld("kp", f"({j}) * {E} + e")};
        s *= scale;
% if masked:
        s += ${ld("mask", f"mrow + ({i}) * mi + ({j}) * mj")};
% endif
</%def>\
<%def name="shift()">\
    q += q_off;
    k += k_off;
    v += v_off;
% if kernel == "backward_dq":
    out += out_off;
% endif
% if kernel != "forward":
    dout += dout_off;
% endif
</%def>\
<%def name="mask_base()">\
% if masked:
    const int mrow = mask_off + (bh / NB2) * mb1 + (bh % NB2) * mb2;
% endif
</%def>\

% if kernel == "forward":
__kernel void attention_forward(const int BH, const int L, const int S, const ${acc} scale,
                                __global const ${t} *q, const int q_off, __global const ${t} *k, const int k_off,
                        __global const ${t} *v, const int v_off,
${mask_args()}\
                                __global ${t} *out, __global ${acc} *lse)
{
    const int gid = get_global_id(0);
${shift()}\
    if (gid >= BH * L) return;
    const int bh = gid / L, i = gid - bh * L;
    __global const ${t} *kp = k + (size_t)bh * S * ${E};
    __global const ${t} *vp = v + (size_t)bh * S * ${EV};
${mask_base()}\
    ${acc} qr[${E}], o[${EV}];
    for (int e = 0; e < ${E}; e++) qr[e] = ${ld("q", f"(size_t)gid * {E} + e")};
    for (int e = 0; e < ${EV}; e++) o[e] = 0;
    ${acc} m = -INFINITY, l = 0;
% if causal:
    const int jend = min(S, i + 1);
% else:
    const int jend = S;
% endif
    for (int j = 0; j < jend; j++) {
${score("i", "j")}\
        if (s == -INFINITY) continue;
        if (s > m) {
            const ${acc} corr = exp(m - s);   /* 0 for the first key seen */
            l *= corr;
            for (int e = 0; e < ${EV}; e++) o[e] *= corr;
            m = s;
        }
        const ${acc} p = exp(s - m);
        l += p;
        for (int e = 0; e < ${EV}; e++) o[e] += p * ${ld("vp", f"j * {EV} + e")};
    }
    const ${acc} inv = l > 0 ? 1 / l : 0;
    for (int e = 0; e < ${EV}; e++) ${st("out", f"(size_t)gid * {EV} + e", "o[e] * inv")};
    lse[gid] = l > 0 ? m + log(l) : -INFINITY;
}

% elif kernel == "backward_dq":
__kernel void attention_backward_dq(const int BH, const int L, const int S, const ${acc} scale,
                                    __global const ${t} *q, const int q_off, __global const ${t} *k, const int k_off,
                        __global const ${t} *v, const int v_off,
${mask_args()}\
                                    __global const ${t} *out, const int out_off, __global const ${t} *dout, const int dout_off,
                                    __global const ${acc} *lse, __global ${acc} *D, __global ${t} *dq)
{
    const int gid = get_global_id(0);
${shift()}\
    if (gid >= BH * L) return;
    const int bh = gid / L, i = gid - bh * L;
    __global const ${t} *kp = k + (size_t)bh * S * ${E};
    __global const ${t} *vp = v + (size_t)bh * S * ${EV};
${mask_base()}\
    ${acc} qr[${E}], dor[${EV}], dqr[${E}];
    for (int e = 0; e < ${E}; e++) { qr[e] = ${ld("q", f"(size_t)gid * {E} + e")}; dqr[e] = 0; }
    ${acc} Di = 0;
    for (int e = 0; e < ${EV}; e++) {
        dor[e] = ${ld("dout", f"(size_t)gid * {EV} + e")};
        Di += dor[e] * ${ld("out", f"(size_t)gid * {EV} + e")};
    }
    D[gid] = Di;
    const ${acc} lse_i = lse[gid];
% if causal:
    const int jend = lse_i == -INFINITY ? 0 : min(S, i + 1);
% else:
    const int jend = lse_i == -INFINITY ? 0 : S;
% endif
    for (int j = 0; j < jend; j++) {
${score("i", "j")}\
        const ${acc} p = exp(s - lse_i);
        ${acc} dp = 0;
        for (int e = 0; e < ${EV}; e++) dp += dor[e] * ${ld("vp", f"j * {EV} + e")};
        const ${acc} ds = p * (dp - Di);
        for (int e = 0; e < ${E}; e++) dqr[e] += ds * ${ld("kp", f"j * {E} + e")};
    }
    for (int e = 0; e < ${E}; e++) ${st("dq", f"(size_t)gid * {E} + e", "dqr[e] * scale")};
}

% elif kernel == "backward_dkv":
__kernel void attention_backward_dkv(const int BH, const int L, const int S, const ${acc} scale,
                                     __global const ${t} *q, const int q_off, __global const ${t} *k, const int k_off,
                        __global const ${t} *v, const int v_off,
${mask_args()}\
                                     __global const ${t} *dout, const int dout_off, __global const ${acc} *lse,
                                     __global const ${acc} *D, __global ${t} *dk, __global ${t} *dv)
{
    const int gid = get_global_id(0);
${shift()}\
    if (gid >= BH * S) return;
    const int bh = gid / S, j = gid - bh * S;
    __global const ${t} *qp = q + (size_t)bh * L * ${E};
    __global const ${t} *dop = dout + (size_t)bh * L * ${EV};
${mask_base()}\
    ${acc} kr[${E}], vr[${EV}], dkr[${E}], dvr[${EV}];
    for (int e = 0; e < ${E}; e++) { kr[e] = ${ld("k", f"(size_t)gid * {E} + e")}; dkr[e] = 0; }
    for (int e = 0; e < ${EV}; e++) { vr[e] = ${ld("v", f"(size_t)gid * {EV} + e")}; dvr[e] = 0; }
% if causal:
    const int istart = j;
% else:
    const int istart = 0;
% endif
    for (int i = istart; i < L; i++) {
        const ${acc} lse_i = lse[bh * L + i];
        if (lse_i == -INFINITY) continue;
        ${acc} s = 0;
        for (int e = 0; e < ${E}; e++) s += ${ld("qp", f"i * {E} + e")} * kr[e];
        s *= scale;
% if masked:
        s += ${ld("mask", "mrow + i * mi + j * mj")};
% endif
        const ${acc} p = exp(s - lse_i);
        ${acc} dp = 0;
        for (int e = 0; e < ${EV}; e++) {
            const ${acc} d = ${ld("dop", f"i * {EV} + e")};
            dvr[e] += p * d;
            dp += d * vr[e];
        }
        const ${acc} ds = p * (dp - D[bh * L + i]);
        for (int e = 0; e < ${E}; e++) dkr[e] += ds * ${ld("qp", f"i * {E} + e")};
    }
    for (int e = 0; e < ${E}; e++) ${st("dk", f"(size_t)gid * {E} + e", "dkr[e] * scale")};
    for (int e = 0; e < ${EV}; e++) ${st("dv", f"(size_t)gid * {EV} + e", "dvr[e]")};
}
% endif
