## Convolutions as GEMMs without a column matrix ("implicit GEMM") for CPU-style devices.
##
## The input is first copied into *pitched planes*: every (n, c) plane zero-padded to Hp x Wp (the
## convolution's padding around it) and a few zero elements of slack after the last plane. In that layout
## a stride-1 convolution is a plain GEMM whose B operand is a shifted view of the planes:
##     y[n, o, q] = sum_{c, ky, kx} w[o, c, ky, kx] * xp[n, c, q + ky*DH*Wp + kx*DW]
## for the flat output position q = oh*Wp + ow (ow < OW; the Wp - OW positions at the end of each row are
## computed and never stored). So the GEMM's inner loop is the same vector-register micro-kernel as
## gemm_cpu in matmul.cl.mako: MR output channels x NR consecutive positions per work-item, each k step
## one broadcast weight per row and NR/VW unaligned vector loads of the input, no masks.
##
## Kernels (t: storage type, acc: accumulation type; sizes and strides are arguments):
##   pad_pitched     xp[n, c, r, j] = x[n, c, r - top, j - left] (0 outside x), planes of Hp x Wp, + zero rows
##   conv_gemm       the forward above; also the input gradient of stride-1 convolutions (a convolution of
##                   the output gradient, padded by K-1-P, with the weights flipped and channels swapped)
##   grad_panels     the output gradient transposed into NR-channel panels over the input's flat positions
##   conv_wgrad      weight gradient as a GEMM over (n, q): dw[o, c, ky, kx] = sum xp[n, c, q + shift] * gy[n, o, q]
##                   with the taps broadcast from the input's planes and the output channels as vectors (the
##                   same register block as the forward); the batch cut into splits summed afterwards
##   conv_wgrad_q    weight gradient with vectors along the flat positions q instead: MO output channels x MK
##                   taps per work-item, both operands read in place from pitched planes of one pitch (the
##                   output gradient's planes may be the very copy the input-gradient pass made), lanes
##                   summed at the end; no transposed copy of the output gradient
<%page args="kernel, t, acc, MR=8, NR=16, VW=8, KWU=0, MO=4, MK=3"/>
<%!
def vld(t, w, i, p):
    return f"vload_half{w}({i}, {p})" if t == "half" else f"vload{w}({i}, {p})"

def vst(t, w, v, i, p):
    return f"vstore_half{w}({v}, {i}, {p})" if t == "half" else f"vstore{w}({v}, {i}, {p})"

def ld(t, p):
    return f"vload_half(0, {p})" if t == "half" else f"(*({p}))"

def st(t, p, v):
    return f"vstore_half({v}, 0, {p})" if t == "half" else f"*({p}) = ({t})({v})"
%>
#define EPI_BIAS 2
#define EPI_RELU 4
#define EPI_ACCUM 8
#define DIVMOD(q, r, a, b) const int q = (a) / (b); const int r = (a) - q * (b)

% if kernel == "pad_pitched":
// xp[p, r, j] = x[p / C, p % C, r - top, j - left] for planes p = n*C + c (x read through strides), 0 outside
// x; planes of Hp x Wp follow each other, then `slack_rows` rows of zeros. A 2-D range (j, plane row): the
// one division per item depends on the row only, so it is shared by the row's vector of work-items.
__kernel void pad_pitched(const int NP, const int C, const int H, const int W, const int top, const int left,
    const int Hp, const int Wp,
    __global const ${t} *x, const int x_off, const int xs_n, const int xs_c, const int xs_h, const int xs_w,
    __global ${t} *xp, const int xp_off)
{
    const int j = get_global_id(0), row = get_global_id(1);   // the range is exactly (Wp, rows)
    const int p = row / Hp, r = row - p * Hp;
    const int n = p / C, c = p - n * C;
    const int h = r - top, w = j - left;
    const int hc = clamp(h, 0, H - 1), wc = clamp(w, 0, W - 1), nc = min(n, NP / C - 1);
    const int inside = p < NP && h == hc && w == wc;
    const ${t} v = x[x_off + nc * xs_n + c * xs_c + hc * xs_h + wc * xs_w];
    // branch-free (clamped load, select) so that PoCL vectorises the row of work-items
    xp[xp_off + row * Wp + j] = inside ? v : (${t})0;
}
% endif

% if kernel == "pack_panels":
// wt[ob][(c*KH + ky)*KW + kx][r] = w[ob*MR + r, c, ky, kx] (read through strides; 0 for rows >= OC): the
// ${MR}-row panels conv_gemm reads with contiguous broadcasts. The range is exactly (${MR}, KH*KW, OB*C):
// the divisions depend on the slower dimensions only, and the store is branch-free.
__kernel void pack_panels(const int OC, const int C, const int KH, const int KW,
    __global const ${t} *w, const int w_off, const int ws_o, const int ws_c, const int ws_h, const int ws_w,
    __global ${t} *wt, const int wt_off)
{
    const int r = get_global_id(0), tap = get_global_id(1), obc = get_global_id(2);
    const int ky = tap / KW, kx = tap - ky * KW;
    const int ob = obc / C, c = obc - ob * C;
    const int o = ob * ${MR} + r;
    const ${t} v = w[w_off + min(o, OC - 1) * ws_o + c * ws_c + ky * ws_h + kx * ws_w];
    wt[wt_off + ((obc * KH + ky) * KW + kx) * ${MR} + r] = o < OC ? v : (${t})0;
}
% endif

% if kernel == "conv_gemm":
<%
    nv = NR // VW
    vt = f"{acc}{VW}"
%>
// y[n, o, oh, ow] = epilogue(sum_{c, ky, kx} wt[(c*KH + ky)*KW + kx][o] * xp[n, c, oh*Wp + ow + ky*DH*Wp + kx*DW])
// One work-item: ${MR} output channels x ${NR} consecutive flat positions q0 .. q0+${NR - 1} (${nv} vectors of
// ${VW}). Tiles: with tpr > 0, tile t covers row t / tpr from column (t % tpr) * ${NR} (rows of OW >= ${NR});
// with tpr == 0, tile t starts at q0 = t * ${NR} and may cross rows (narrow images). wt is packed by
// conv.cl.mako's pack_weights as [C*KH*KW][OCP] (OCP a multiple of ${MR}, zero past OC).
// Epilogue bits: EPI_BIAS adds bias[o], EPI_RELU clamps at 0, EPI_ACCUM adds the old y (y += result).
__kernel void conv_gemm(const int OC, const int C, const int KH, const int KW, const int plane, const int Wp,
    const int DHW, const int DW, const int OH, const int OW, const int tpr, const int ntiles,
    __global const ${t} *restrict xp, const int xp_off, const int xs_n,
    __global const ${t} *restrict wt, const int wt_off, const int OCP,
    __global ${t} *restrict y, const int y_off, const int ys_n, const int ys_o, const int ys_h, const int ys_w,
    __global const ${t} *restrict bias, const int bias_off, const int epi)
{
    const int tile = get_global_id(0), ob = get_global_id(1), n = get_global_id(2);
    if (tile >= ntiles) return;
    int oh0, ow0, q0;
    if (tpr > 0) {
        oh0 = tile / tpr;
        ow0 = (tile - oh0 * tpr) * ${NR};
        q0 = oh0 * Wp + ow0;
    } else {
        q0 = tile * ${NR};
        oh0 = q0 / Wp;
        ow0 = q0 - oh0 * Wp;
    }
% for r in range(MR):
  % for v in range(nv):
    ${vt} c${r}_${v} = (${vt})(0);
  % endfor
% endfor
    __global const ${t} *xc = xp + xp_off + n * xs_n + q0;
    __global const ${t} *w = wt + wt_off + ob * C * KH * KW * ${MR};
    for (int c = 0; c < C; ++c, xc += plane) {
        __global const ${t} *xr = xc;
        for (int ky = 0; ky < KH; ++ky, xr += DHW) {
% if KWU:
  % for kx in range(KWU):
            {
                __global const ${t} *b = xr + ${kx} * DW;
    % for v in range(nv):
                const ${vt} b${v} = ${vld(t, VW, v, "b")};
    % endfor
    % for r in range(MR):
                const ${vt} a${r} = (${vt})(${ld(t, "w + %d" % r)});
      % for v in range(nv):
                c${r}_${v} = fma(a${r}, b${v}, c${r}_${v});
      % endfor
    % endfor
                w += ${MR};
            }
  % endfor
% else:
            for (int kx = 0; kx < KW; ++kx, w += ${MR}) {
                __global const ${t} *b = xr + kx * DW;
  % for v in range(nv):
                const ${vt} b${v} = ${vld(t, VW, v, "b")};
  % endfor
  % for r in range(MR):
                const ${vt} a${r} = (${vt})(${ld(t, "w + %d" % r)});
    % for v in range(nv):
                c${r}_${v} = fma(a${r}, b${v}, c${r}_${v});
    % endfor
  % endfor
            }
% endif
        }
    }
    const int o0 = ob * ${MR};
    __global ${t} *yn = y + y_off + n * ys_n;
    if (ow0 + ${NR} <= OW && o0 + ${MR} <= OC && ys_w == 1) {
        // the whole tile lies inside one output row: vector stores
        __global ${t} *yo = yn + o0 * ys_o + oh0 * ys_h + ow0;
% for r in range(MR):
        {
            const ${vt} bv = (epi & EPI_BIAS) ? (${vt})(${ld(t, "bias + bias_off + o0 + %d" % r)}) : (${vt})(0);
  % for v in range(nv):
            {
                ${vt} r_ = c${r}_${v} + bv;
                if (epi & EPI_ACCUM) r_ += ${vld(t, VW, v, "yo + %d * ys_o" % r)};
                if (epi & EPI_RELU) r_ = fmax(r_, (${vt})(0));
                ${vst(t, VW, "r_", v, "yo + %d * ys_o" % r)};
            }
  % endfor
        }
% endfor
    } else {
        // edge tile (crosses a row end, the last row or the last channels): element by element
        ${acc} tl[${MR}][${NR}];
% for r in range(MR):
  % for v in range(nv):
        vstore${VW}(c${r}_${v}, ${v}, tl[${r}]);
  % endfor
% endfor
        const int rows = min(${MR}, OC - o0);
        int oh = oh0, ow = ow0;
        for (int j = 0; j < ${NR}; ++j, ++ow) {
            if (ow == Wp) { ow = 0; ++oh; }
            if (ow >= OW || oh >= OH) continue;
            __global ${t} *yp = yn + oh * ys_h + ow * ys_w;
            for (int r = 0; r < rows; ++r) {
                ${acc} v = tl[r][j];
                if (epi & EPI_BIAS) v += ${ld(t, "bias + bias_off + o0 + r")};
                if (epi & EPI_ACCUM) v += ${ld(t, "yp + (o0 + r) * ys_o")};
                if (epi & EPI_RELU) v = fmax(v, (${acc})0);
                ${st(t, "yp + (o0 + r) * ys_o", "v")};
            }
        }
    }
}
% endif

% if kernel == "grad_panels":
// gyt[n][ob][q][j] = gy[n, ob*${NR} + j, q / Wp, q % Wp] for q < OH*Wp: the output gradient transposed into
// ${NR}-channel panels over the flat positions q = oh*Wp + ow of the input's pitch, 0 at the columns
// ow >= OW and the channels past OC (the B operand of conv_wgrad). The range is exactly (${NR}, Wp, N*OB*OH).
__kernel void grad_panels(const int OC, const int OH, const int OW, const int Wp, const int OB,
    __global const ${t} *gy, const int gy_off, const int gs_n, const int gs_c, const int gs_h, const int gs_w,
    __global ${t} *gyt)
{
    const int j = get_global_id(0), ow = get_global_id(1), row = get_global_id(2);
    const int nb = row / OH, oh = row - nb * OH;      // row = (n*OB + ob)*OH + oh
    const int n = nb / OB, ob = nb - n * OB;
    const int oc = ob * ${NR} + j;
    const int ok = oc < OC && ow < OW;
    const ${t} v = gy[gy_off + n * gs_n + min(oc, OC - 1) * gs_c + oh * gs_h + min(ow, OW - 1) * gs_w];
    gyt[((size_t)row * Wp + ow) * ${NR} + j] = ok ? v : (${t})0;
}
% endif

% if kernel == "conv_wgrad":
<%
    nv = NR // VW
    vt = f"{acc}{VW}"
    lanes = "0123456789abcdef"
%>
// part[s, o, c, ky, kx] (strides s_split, so, sc, sh, sw) = sum over the images n of split s and the flat
// positions q < Q = (OH-1)*Wp + OW of
//     xp[n, c, q + ky*DH*Wp + kx*DW] * gyt[n][o / ${NR}][q][o % ${NR}]        (k = (c*KH + ky)*KW + kx)
// the weight gradient as a GEMM over (n, q): A = the input's planes at each tap's shift (broadcast),
// B = the output gradient in ${NR}-channel panels (grad_panels, zero at junk columns). One work-item: ${MR}
// taps x ${NR} output channels (${nv} vectors of ${VW}), the same register block as the GEMM.
__kernel void conv_wgrad(const int N, const int C, const int KH, const int KW, const int OC, const int OB,
    const int Q, const int Qp, const int plane, const int DHW, const int DW, const int nper,
    __global const ${t} *restrict xp, const int xp_off,
    __global const ${t} *restrict gyt,
    __global ${t} *restrict part, const int part_off, const int s_split, const int so, const int sc,
    const int sh, const int sw)
{
    const int kb = get_global_id(0), ob = get_global_id(1), s = get_global_id(2);
    const int K = C * KH * KW;
    if (kb * ${MR} >= K) return;
    const int n0 = s * nper, n1 = min(N, n0 + nper);
% for r in range(MR):
    int off${r}, dst${r};
    {
        const int k = min(kb * ${MR} + ${r}, K - 1);
        DIVMOD(ck, kx, k, KW);
        DIVMOD(c, ky, ck, KH);
        off${r} = c * plane + ky * DHW + kx * DW;
        dst${r} = c * sc + ky * sh + kx * sw;
    }
% endfor
% for r in range(MR):
  % for v in range(nv):
    ${vt} a${r}_${v} = (${vt})(0);
  % endfor
% endfor
    for (int n = n0; n < n1; ++n) {
        __global const ${t} *xn = xp + xp_off + n * C * plane;
        __global const ${t} *b = gyt + ((size_t)(n * OB + ob) * Qp) * ${NR};   // panels of Qp rows
        for (int q = 0; q < Q; ++q, b += ${NR}) {
% for v in range(nv):
            const ${vt} b${v} = ${vld(t, VW, v, "b")};
% endfor
% for r in range(MR):
            const ${vt} x${r} = (${vt})(${ld(t, "xn + off%d + q" % r)});
  % for v in range(nv):
            a${r}_${v} = fma(x${r}, b${v}, a${r}_${v});
  % endfor
% endfor
        }
    }
    __global ${t} *out = part + part_off + (size_t)s * s_split + ob * ${NR} * so;
% for r in range(MR):
    if (kb * ${MR} + ${r} < K) {
  % for v in range(nv):
    % for j in range(VW):
        if (ob * ${NR} + ${v * VW + j} < OC)
            ${st(t, "out + %d * so + dst%d" % (v * VW + j, r), "a%d_%d.s%s" % (r, v, lanes[j]))};
    % endfor
  % endfor
    }
% endfor
}
% endif

% if kernel == "conv_wgrad_q":
<%
    vt = f"{acc}{VW}"
    lanes = "0123456789abcdef"
    def hsum(v):
        return " + ".join(f"{v}.s{lanes[j]}" for j in range(VW))
%>
// part[s, o, c, ky, kx] (strides s_split, so, sc, sh, sw) = sum over the images n of split s and the
// positions q < NV*${VW} of
//     gyp[n, o, gq0 + q] * xp[n, c, q + ky*DHW + kx*DW]                       (k = (c*KH + ky)*KW + kx)
// gyp: the output gradient in pitched planes (gplane elements each, its first value at gq0, zeros at the
// junk columns and for at least ${VW} positions past the last value); xp: the input in pitched planes of the
// same pitch (xplane elements each, padded so that position q + shift is the input value that meets gyp's
// position gq0 + q). One work-item: ${MO} output channels x ${MK} taps, ${MO * MK} vector accumulators of ${VW}
// lanes, summed at the end. Every load is an unaligned vector load inside the buffers (the host makes both
// long enough); products at junk positions are x * 0.
__kernel void conv_wgrad_q(const int N, const int C, const int KH, const int KW, const int OC, const int NV,
    const int gplane, const int gq0, const int xplane, const int DHW, const int DW, const int nper,
    __global const ${t} *restrict gyp, const int gy_off, const int gs_n,
    __global const ${t} *restrict xp, const int xp_off, const int xs_n,
    __global ${t} *restrict part, const int part_off, const int s_split, const int so, const int sc,
    const int sh, const int sw)
{
    const int kb = get_global_id(0), ob = get_global_id(1), s = get_global_id(2);
    const int K = C * KH * KW;
    if (kb * ${MK} >= K || ob * ${MO} >= OC) return;
    const int n0 = s * nper, n1 = min(N, n0 + nper);
% for r in range(MK):
    int off${r}, dst${r};
    {
        const int k = min(kb * ${MK} + ${r}, K - 1);
        DIVMOD(ck, kx, k, KW);
        DIVMOD(c, ky, ck, KH);
        off${r} = c * xplane + ky * DHW + kx * DW;
        dst${r} = c * sc + ky * sh + kx * sw;
    }
% endfor
% for o in range(MO):
    const int go${o} = min(ob * ${MO} + ${o}, OC - 1) * gplane + gq0;
% endfor
% for o in range(MO):
  % for r in range(MK):
    ${vt} a${o}_${r} = (${vt})(0);
  % endfor
% endfor
    for (int n = n0; n < n1; ++n) {
        __global const ${t} *gn = gyp + gy_off + n * gs_n;
        __global const ${t} *xn = xp + xp_off + n * xs_n;
        for (int v = 0; v < NV; ++v) {
            const int q = v * ${VW};
% for o in range(MO):
            const ${vt} g${o} = ${vld(t, VW, 0, "gn + go%d + q" % o)};
% endfor
% for r in range(MK):
            {
                const ${vt} xv = ${vld(t, VW, 0, "xn + off%d + q" % r)};
  % for o in range(MO):
                a${o}_${r} = fma(g${o}, xv, a${o}_${r});
  % endfor
            }
% endfor
        }
    }
    __global ${t} *out = part + part_off + (size_t)s * s_split;
% for o in range(MO):
    if (ob * ${MO} + ${o} < OC) {
  % for r in range(MK):
        if (kb * ${MK} + ${r} < K)
            ${st(t, "out + (ob * %d + %d) * so + dst%d" % (MO, o, r), hsum("a%d_%d" % (o, r)))};
  % endfor
    }
% endfor
}
% endif
