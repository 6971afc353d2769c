## Winograd convolution F(m x m, 3 x 3) for stride-1 3x3 convolutions: the transforms around batched GEMMs.
##
## A 3x3 convolution over (m+2) x (m+2) input tiles d (overlapping by 2) gives m x m output tiles
##     Y = A^T [ (G g G^T) (.) (B^T d B) ] A           ((.) elementwise over the a x a = (m+2)^2 points)
## so summing over input channels turns into a^2 independent GEMMs, one per point xi:
##     M[xi] (OC x T) = U[xi] (OC x C) @ V[xi] (C x T),   U = G g G^T, V = B^T d B, T = tiles in the batch
## with 2.25x (m = 2) or 4x (m = 4) fewer multiplications than the direct convolution. The weight gradient
## uses the same points: with Z = A dY A^T (dY: an m x m tile of the output gradient),
##     dU[xi] (OC x C) = Z[xi] (OC x T) @ V[xi]^T,   dw = G^T dU G.
## The matrices A, B, G are the standard ones (Lavin & Gray, 2016), rendered into straight-line C below
## (render-time constants, no loops: PoCL vectorises across work-items).
##
## Tiles are numbered t = (n*TH + ty)*TW + tx up to TP (a multiple of the vector width and of the GEMM's
## panel width); small int tables made once per geometry give each tile's offset in the (padded) input, in
## the output and its valid rows/columns, so no kernel divides per element (integer division is what made
## index-heavy kernels ~10x slower than a plain copy on PoCL). Layouts are whatever the GEMM wants:
##   V (lanes over tiles)    xi*s_x + c*s_c + (t / NT)*s_tb + t % NT: plain rows [xi][C][TP] (NT = 1, s_c = TP)
##                           or the CPU GEMM's B panels [xi][TP/NT][C][NT] (s_c = NT, s_tb = C*NT)
##   Z (lanes over channels) xi*s_x + (o / NC)*s_cb + o % NC + t*s_t: plain rows (NC = 1) or channel panels
##                           [xi][OCP/NC][TP][NC] (the B operand of the weight-gradient GEMM on CPUs)
## VW: tiles (V, output) or channels (Z) per work-item, as vector lanes (1 on GPUs).
##
## Kernels (t: storage type, acc: accumulation type; sizes and strides are arguments):
##   wino_input    V = B^T d B for every (c, tile) from the input in zero-padded pitched planes
##                 (conv_gemm.cl.mako pad_pitched)
##   wino_grad_out Z = A dY A^T for every (o, tile) of the output gradient gy, read through strides
##   wino_filter   U[xi][o][c] = G g G^T for g = w[o, c] (3x3, read through strides: flips are strides)
##   wino_output   y = A^T M A (+ bias, ReLU) from M plain [xi][OC][TP]
##   wino_wgrad    dw[o, c] = G^T dU G from dU plain [xi][C][OC], dw written through strides
<%page args="kernel, t, acc, m=2, NC=1, NT=1, VW=1"/>
<%!
from fractions import Fraction as Fr

MATRICES = {
    2: dict(
        BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        G=[[1, 0, 0], [Fr(1, 2), Fr(1, 2), Fr(1, 2)], [Fr(1, 2), Fr(-1, 2), Fr(1, 2)], [0, 0, 1]],
        AT=[[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: dict(
        BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        G=[[Fr(1, 4), 0, 0], [Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)], [Fr(-1, 6), Fr(1, 6), Fr(-1, 6)],
           [Fr(1, 24), Fr(1, 12), Fr(1, 6)], [Fr(1, 24), Fr(-1, 12), Fr(1, 6)], [0, 0, 1]],
        AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def vst(t, w, v, i, p):
    return f"vstore_half{w}({v}, {i}, {p})" if t == "half" else f"vstore{w}({v}, {i}, {p})"


def vld(t, w, i, p):
    return f"vload_half{w}({i}, {p})" if t == "half" else f"vload{w}({i}, {p})"


def gather(vt, terms):
    """a vector (or scalar) from one expression per lane"""
    return f"({vt})({', '.join(terms)})" if len(terms) > 1 else f"({vt})({terms[0]})"


def lin(coeffs, names, acc):
    """C expression for sum_k coeffs[k] * names[k] with the zero terms left out."""
    terms = []
    for c, nm in zip(coeffs, names):
        c = Fr(c)
        if c == 0:
            continue
        if c == 1:
            terms.append(f"+ {nm}")
        elif c == -1:
            terms.append(f"- {nm}")
        else:
            lit = f"({acc})({float(abs(c))!r}f)" if acc == "float" else f"({acc})({float(abs(c))!r})"
            terms.append(f"{'-' if c < 0 else '+'} {lit} * {nm}")
    if not terms:
        return f"({acc})0"
    s = " ".join(terms)
    return s[2:] if s.startswith("+ ") else "-" + s[2:]


def sandwich(L, R, src, dst, acc, decl):
    """C statements for dst = L src R^T (src, dst: name prefixes of 2-D scalar arrays src{i}_{j}).
    L: p x q, R: s x r; src q x r -> dst p x s. Returns a list of lines."""
    p, q = len(L), len(L[0])
    s_, r = len(R), len(R[0])
    lines = []
    for i in range(p):
        for j in range(r):
            lines.append(f"const {decl} {dst}h{i}_{j} = {lin(L[i], [f'{src}{k}_{j}' for k in range(q)], acc)};")
    for i in range(p):
        for j in range(s_):
            lines.append(f"const {decl} {dst}{i}_{j} = {lin(R[j], [f'{dst}h{i}_{k}' for k in range(r)], acc)};")
    return lines


def transpose(Mx):
    return [list(col) for col in zip(*Mx)]
%>
<%
    mats = MATRICES[m]
    BT, G, AT = mats["BT"], mats["G"], mats["AT"]
    a = m + 2
    A = transpose(AT)      # a x m
    GT = transpose(G)      # 3 x a
%>
#define DIVMOD(q, r, x, y) const int q = (x) / (y); const int r = (x) - q * (y)
#define EPI_BIAS 2
#define EPI_RELU 4

% if kernel == "wino_input":
<%
    vt = f"{acc}{VW}" if VW > 1 else acc
    lanes = range(VW)
%>
// V[xi, c, t] = (B^T d B)[xi] for the ${a}x${a} tile d of channel c at xp + c*plane + toff[t], where xp holds the
// input in zero-padded pitched planes (pad_pitched: every tile lies inside, no bounds checks) and toff is the
// tile table (tile t's top-left offset within its image's planes). One work-item: ${VW} consecutive tiles t0..
// (lanes of a vector, gathered through the table) of one channel; the ${a * a} results are stored as vectors
// (the ${VW} tiles are consecutive in every layout). Tiles past the batch (to TP, a multiple of ${VW}) point
// at tile 0 in the table: finite values the GEMM's caller discards (the weight gradient zeroes Z there).
__kernel void wino_input(const int plane, const int Wp,
    __global const ${t} *xp, const int xp_off,
    __global const int *toff,
    __global ${t} *v, const int v_off, const int s_x, const int s_c, const int s_tb)
{
    const int t0 = get_global_id(0) * ${VW}, c = get_global_id(1);   // the range is exactly (TP / ${VW}, C)
    __global const ${t} *xc = xp + xp_off + c * plane;
% for l in lanes:
    __global const ${t} *p${l} = xc + toff[t0 + ${l}];
% endfor
% for i in range(a):
  % for j in range(a):
<% terms = ["(%s)p%d[%d * Wp + %d]" % (acc, l, i, j) for l in lanes] %>\
    const ${vt} d${i}_${j} = ${gather(vt, terms)};
  % endfor
% endfor
% for line in sandwich(BT, BT, "d", "e", acc, vt):
    ${line}
% endfor
    __global ${t} *out = v + v_off + c * s_c + (t0 / ${NT}) * s_tb + (t0 % ${NT});
% for i in range(a):
  % for j in range(a):
    % if VW > 1:
    ${vst(t, VW, "e%d_%d" % (i, j), 0, "out + %d * s_x" % (i * a + j))};
    % else:
    out[${i * a + j} * s_x] = (${t})e${i}_${j};
    % endif
  % endfor
% endfor
}
% endif

% if kernel == "wino_grad_out":
<%
    vt = f"{acc}{VW}" if VW > 1 else acc
    lanes = range(VW)
%>
// Z[xi, o, t] = (A dY A^T)[xi] for the ${m}x${m} output-gradient tile dY of channel o at gy + gtab[t] (zero past
// the image: lim[t] = 16 * valid rows + valid columns, 0 for tiles past the batch). One work-item: ${VW}
// consecutive channels o0.. (lanes) of one tile; stored at xi*s_x + (o / ${NC})*s_cb + (o % ${NC}) + t*s_t, so
// the ${VW} channels are contiguous (channel panels of ${NC} on CPUs, plain rows with ${VW} = 1 elsewhere).
__kernel void wino_grad_out(const int OC, const int gs_c, const int gs_h, const int gs_w,
    __global const ${t} *gy, const int gy_off,
    __global const int *gtab, __global const int *lim,
    __global ${t} *z, const int z_off, const int s_x, const int s_cb, const int s_t)
{
    const int tt = get_global_id(0), o0 = get_global_id(1) * ${VW};   // the range is exactly (TP, OCP / ${VW})
    const int lm = lim[tt], vr = lm >> 4, vc = lm & 15;
    __global const ${t} *gt = gy + gy_off + gtab[tt];
% for l in lanes:
    __global const ${t} *q${l} = gt + min(o0 + ${l}, OC - 1) * gs_c;
    const ${acc} k${l} = o0 + ${l} < OC ? (${acc})1 : (${acc})0;
% endfor
% for i in range(m):
  % for j in range(m):
<% terms = ["(%s)q%d[%d * gs_h + %d * gs_w] * k%d" % (acc, l, i, j, l) for l in lanes] %>\
    const ${vt} d${i}_${j} = (${i} < vr && ${j} < vc) ? ${gather(vt, terms)} : (${vt})(0);
  % endfor
% endfor
% for line in sandwich(A, A, "d", "e", acc, vt):
    ${line}
% endfor
    __global ${t} *out = z + z_off + (o0 / ${NC}) * s_cb + (o0 % ${NC}) + tt * s_t;
% for i in range(a):
  % for j in range(a):
    % if VW > 1:
    ${vst(t, VW, "e%d_%d" % (i, j), 0, "out + %d * s_x" % (i * a + j))};
    % else:
    out[${i * a + j} * s_x] = (${t})e${i}_${j};
    % endif
  % endfor
% endfor
}
% endif

% if kernel == "wino_filter":
// U[xi, o, c] = (G g G^T)[xi] for g = w[o, c, :, :] (read through strides), U plain [xi][OC][C] (planes s_x apart)
__kernel void wino_filter(const int OC, const int C,
    __global const ${t} *w, const int w_off, const int ws_o, const int ws_c, const int ws_h, const int ws_w,
    __global ${t} *u, const int u_off, const int s_x)
{
    const int c = get_global_id(0), o = get_global_id(1);   // the range is exactly (C, OC)
    const int gid = o * C + c;
    __global const ${t} *wp = w + w_off + o * ws_o + c * ws_c;
% for i in range(3):
  % for j in range(3):
    const ${acc} g${i}_${j} = (${acc})wp[${i} * ws_h + ${j} * ws_w];
  % endfor
% endfor
% for line in sandwich(G, G, "g", "e", acc, acc):
    ${line}
% endfor
    __global ${t} *out = u + u_off + gid;
% for i in range(a):
  % for j in range(a):
    out[${i * a + j} * s_x] = (${t})e${i}_${j};
  % endfor
% endfor
}
% endif

% if kernel == "wino_output":
<%
    vt = f"{acc}{VW}" if VW > 1 else acc
    lanes = range(VW)
%>
// y[tile t, o] = epilogue(A^T M A) with M plain [xi][OC][TP]: one work-item per (${VW} consecutive tiles, o),
// M read as vectors; each lane stores its ${m}x${m} block at y + ytab[t] + o*ys_o (lim[t] = 16 * valid rows +
// valid columns, 0 past the batch). Epilogue bits: EPI_BIAS adds bias[o], EPI_RELU clamps at 0.
__kernel void wino_output(const int TP, const int s_x,
    __global const ${t} *mm, const int m_off,
    __global const int *ytab, __global const int *lim,
    __global ${t} *y, const int y_off, const int ys_o, const int ys_h, const int ys_w,
    __global const ${t} *bias, const int bias_off, const int epi)
{
    const int t0 = get_global_id(0) * ${VW}, o = get_global_id(1);   // the range is exactly (TP / ${VW}, OC)
    __global const ${t} *src = mm + m_off + o * TP + t0;
% for i in range(a):
  % for j in range(a):
    % if VW > 1:
    const ${vt} s${i}_${j} = ${vld(t, VW, 0, "src + %d * s_x" % (i * a + j))};
    % else:
    const ${vt} s${i}_${j} = (${acc})src[${i * a + j} * s_x];
    % endif
  % endfor
% endfor
% for line in sandwich(AT, AT, "s", "e", acc, vt):
    ${line}
% endfor
    const ${acc} b = (epi & EPI_BIAS) ? (${acc})bias[bias_off + o] : (${acc})0;
% for i in range(m):
  % for j in range(m):
    ${vt} r${i}_${j} = e${i}_${j} + b;
  % endfor
% endfor
    if (epi & EPI_RELU) {
% for i in range(m):
  % for j in range(m):
        r${i}_${j} = fmax(r${i}_${j}, (${vt})(0));
  % endfor
% endfor
    }
% for l in lanes:
<% comp = ("." + "s" + "0123456789abcdef"[l]) if VW > 1 else "" %>\
    {
        const int lm = lim[t0 + ${l}], vr = lm >> 4, vc = lm & 15;
        __global ${t} *yp = y + y_off + ytab[t0 + ${l}] + o * ys_o;
        if (vr == ${m} && vc == ${m}) {
  % for i in range(m):
    % for j in range(m):
            yp[${i} * ys_h + ${j} * ys_w] = (${t})r${i}_${j}${comp};
    % endfor
  % endfor
        } else {
  % for i in range(m):
    % for j in range(m):
            if (${i} < vr && ${j} < vc) yp[${i} * ys_h + ${j} * ys_w] = (${t})r${i}_${j}${comp};
    % endfor
  % endfor
        }
    }
% endfor
}
% endif

% if kernel == "wino_wgrad":
// dw[s, r, :, :] = G^T dU[:, r, s] G with dU plain [xi][R][S]; dw element (s, r, i, j) at s*s_s + r*s_r + 3i + j
__kernel void wino_wgrad(const int R, const int S, const int s_x,
    __global const ${t} *du, const int du_off,
    __global ${t} *dw, const int dw_off, const int s_r, const int s_s)
{
    const int s = get_global_id(0), r = get_global_id(1);   // the range is exactly (S, R)
    const int gid = r * S + s;
    __global const ${t} *src = du + du_off + gid;
% for i in range(a):
  % for j in range(a):
    const ${acc} s${i}_${j} = (${acc})src[${i * a + j} * s_x];
  % endfor
% endfor
% for line in sandwich(GT, GT, "s", "e", acc, acc):
    ${line}
% endfor
    __global ${t} *out = dw + dw_off + r * s_r + s * s_s;
% for i in range(3):
  % for j in range(3):
    out[${i * 3 + j}] = (${t})e${i}_${j};
  % endfor
% endfor
}
% endif
