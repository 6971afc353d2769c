## Row reduction over a contiguous [rows, n] view: out[r] = reduce(x[r, :]).
##   op: sum | max | min | argmax | argmin;  t: storage type, acc: accumulator type, idx: index type
## (Placeholder implementation: one work-item per row with a compensated sum.)
<%
is_arg = op in ("argmax", "argmin")
cmp = ">" if op in ("max", "argmax") else "<"
%>
__kernel void reduce_rows(const ${idx} rows, const ${idx} n,
                          __global const ${t} *x, const ${idx} x_off,
                          __global ${out_t} *out, const ${idx} out_off)
{
    const ${idx} r = get_global_id(0);
    if (r >= rows) return;
    __global const ${t} *row = x + x_off + r * n;
% if op == "sum":
    ${acc} s = 0, c = 0;
    for (${idx} i = 0; i < n; ++i) {
        const ${acc} y = (${acc})row[i] - c;
        const ${acc} tt = s + y;
        c = (tt - s) - y;
        s = tt;
    }
    out[out_off + r] = (${out_t})s;
% else:
    ${acc} best = (${acc})row[0];
    ${idx} at = 0;
    for (${idx} i = 1; i < n; ++i) {
        const ${acc} v = (${acc})row[i];
        if (v ${cmp} best || (v != v && best == best)) { best = v; at = i; }
    }
  % if is_arg:
    out[out_off + r] = (${out_t})at;
  % else:
    out[out_off + r] = (${out_t})best;
  % endif
% endif
}
