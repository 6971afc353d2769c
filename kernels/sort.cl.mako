## Stable sorts along one dimension, with the indices of the sorted elements (sort, argsort, topk, ...).
## The input is contiguous and seen as (outer, L, inner) as in scan.cl.mako; `out`/`ix` are contiguous in
## the same layout. NaN sorts above every number (last ascending, first descending), as in PyTorch; equal
## keys keep their input order. Every output element is written by exactly one work-item (no atomics).
##   kind        rank_sort | merge_sort
##   t           storage type of the values (half is read with vload_half); ct: the type they compare in;
##               floating: ct is a floating type (NaN handling)
##   descending  largest first
##   idx         index type: int, or long past 2**31 elements
## rank_sort: one work-item per element counts the elements that sort before it (O(L) each): for short
## lines. merge_sort: one work-item per line, bottom-up merge between out/ix and the scratch s/sx
## (O(L log L)): for long lines.
<%
def load(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({ct}){ptr}[{at}])"
def store(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte({val}, {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"
%>
// does a (at position ia) sort strictly before b (at ib)? NaN is the largest key; ties keep input order
inline int clnet_before(const ${ct} a, const long ia, const ${ct} b, const long ib)
{
  % if floating:
    const int an = isnan(a), bn = isnan(b);
  % else:
    const int an = 0, bn = 0;
  % endif
  % if descending:
    if (an != bn) return an;
    if (!an && a != b) return a > b;
  % else:
    if (an != bn) return bn;
    if (!an && a != b) return a < b;
  % endif
    return ia < ib;
}

% if kind == "rank_sort":
__kernel void rank_sort(const ${idx} n, const ${idx} L, const ${idx} inner,
    __global const ${t} *x, const ${idx} x_off, __global ${t} *out, __global long *ix)
{
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
    const ${idx} q = gid / inner;
    const ${idx} i = gid - q * inner;
    const ${idx} o = q / L;
    const ${idx} l = q - o * L;
    const ${idx} base = o * L * inner + i;
    const ${ct} v = ${load("x", "x_off + gid")};
    ${idx} rank = 0;
    for (${idx} j = 0; j < L; ++j) {
        rank += clnet_before(${load("x", "x_off + base + j * inner")}, j, v, l);
    }
    ${store("out", "base + rank * inner", "v")};
    ix[base + rank * inner] = l;
}
% elif kind == "merge_sort":
__kernel void merge_sort(const ${idx} lines, const ${idx} L, const ${idx} inner,
    __global const ${t} *x, const ${idx} x_off, __global ${t} *out, __global long *ix,
    __global ${t} *s, __global long *sx)
{
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= lines) return;
    const ${idx} o = gid / inner;
    const ${idx} i = gid - o * inner;
    const ${idx} base = o * L * inner + i;
    for (${idx} l = 0; l < L; ++l) {
        ${store("out", "base + l * inner", load("x", "x_off + base + l * inner"))};
        ix[base + l * inner] = l;
    }
    int in_out = 1;  // the sorted runs are in out/ix (1) or in s/sx (0)
    for (${idx} width = 1; width < L; width *= 2) {
        __global ${t} *src = in_out ? out : s;
        __global long *srcx = in_out ? ix : sx;
        __global ${t} *dst = in_out ? s : out;
        __global long *dstx = in_out ? sx : ix;
        for (${idx} lo = 0; lo < L; lo += 2 * width) {
            const ${idx} mid = min(lo + width, L), hi = min(lo + 2 * width, L);
            ${idx} a = lo, b = mid, k = lo;
            while (k < hi) {
                int take_a;
                if (a >= mid) take_a = 0;
                else if (b >= hi) take_a = 1;
                else take_a = !clnet_before(${load("src", "base + b * inner")}, srcx[base + b * inner],
                                            ${load("src", "base + a * inner")}, srcx[base + a * inner]);
                const ${idx} from = take_a ? a : b;
                ${store("dst", "base + k * inner", load("src", "base + from * inner"))};
                dstx[base + k * inner] = srcx[base + from * inner];
                if (take_a) ++a; else ++b;
                ++k;
            }
        }
        in_out = !in_out;
    }
    if (!in_out) {
        for (${idx} l = 0; l < L; ++l) {
            ${store("out", "base + l * inner", load("s", "base + l * inner"))};
            ix[base + l * inner] = sx[base + l * inner];
        }
    }
}
% endif
