## Scans along one dimension: running sums/products (cumsum, cumprod) and cumprod's gradient.
## The tensor is contiguous and seen as (outer, L, inner): line (o, i) holds the L elements
## x[o * L * inner + l * inner + i]. One work-item per line walks it in order, so results are
## deterministic and every element is written by exactly one work-item; neighbouring work-items
## handle neighbouring i, so their reads are adjacent in memory.
##   kind     scan | cumprod_grad
##   op       sum | prod (scan)
##   t, out_t storage types of the input and the output; acc: the type the running value is kept in
##   reverse  scan from the end (the gradient of cumsum is the reversed cumsum of the gradient)
##   idx      index type: int, or long past 2**31 elements
## Index splits are spelled q = a / b, r = a - q * b (see index.cl.mako for why).
<%
def load(ptr, at, ty):
    if ty == "half":
        return f"(({acc})vload_half({at}, {ptr}))"
    return f"(({acc}){ptr}[{at}])"
def store(ptr, at, val, ty):
    if ty == "half":
        return f"vstore_half_rte({val}, {at}, {ptr})"
    return f"{ptr}[{at}] = ({ty})({val})"
%>
% if kind == "scan":
__kernel void scan(const ${idx} lines, const ${idx} L, const ${idx} inner,
    __global const ${t} *x, const ${idx} x_off, __global ${out_t} *out)
{
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= lines) return;
    const ${idx} o = gid / inner;
    const ${idx} i = gid - o * inner;
    const ${idx} base = o * L * inner + i;
    ${acc} run = ${"0" if op == "sum" else "1"};
  % if reverse:
    for (${idx} l = L - 1; l >= 0; --l) {
  % else:
    for (${idx} l = 0; l < L; ++l) {
  % endif
        const ${idx} at = base + l * inner;
        run ${"+=" if op == "sum" else "*="} ${load("x", "x_off + at", t)};
        ${store("out", "at", "run", out_t)};
    }
}
% elif kind == "cumprod_grad":
## d/dx_l of sum_k g_k * prod_{j<=k} x_j = sum_{k>=l} g_k * prod_{j<=k, j!=l} x_j, exact when x has
## zeros (no division): O(L^2) work per line.
__kernel void cumprod_grad(const ${idx} lines, const ${idx} L, const ${idx} inner,
    __global const ${t} *x, const ${idx} x_off, __global const ${t} *g, const ${idx} g_off, __global ${t} *out)
{
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= lines) return;
    const ${idx} o = gid / inner;
    const ${idx} i = gid - o * inner;
    const ${idx} base = o * L * inner + i;
    ${acc} before = 1;
    for (${idx} l = 0; l < L; ++l) {
        ${acc} run = before, total = 0;
        for (${idx} k = l; k < L; ++k) {
            if (k > l) run *= ${load("x", "x_off + base + k * inner", t)};
            total += ${load("g", "g_off + base + k * inner", t)} * run;
        }
        ${store("out", "base + l * inner", "total", t)};
        before *= ${load("x", "x_off + base + l * inner", t)};
    }
}
% endif
