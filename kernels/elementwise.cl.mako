## One kernel per elementwise expression.
##   expr      C expression over the loaded operands v0, v1, ... (already in the compute type `ct`)
##   out_t     storage type of the output (out_bool: it is a bool, so store expr != 0 as 0/1);
##   in_ts     storage type of each operand (bool/uchar operands
##             stay uchar so they can be conditions), or None for a scalar
##             argument (passed by value in the compute type, so a new scalar never recompiles)
##   rank      0 means every tensor operand is contiguous with the output: index = offset + gid;
##             otherwise the number of (collapsed) dimensions, whose sizes and per-operand strides
##             arrive as arguments, so a new shape of the same rank never recompiles
##   idx       index type: int, or long for tensors past 2**31 elements
##   grid2     (rank >= 2) a 2-D range: dimension 0 walks the innermost dimension, dimension 1 the
##             flattened outer ones, so no work-item divides for its inner coordinate and the outer
##             decomposition is the same for a whole work-group (CPU compilers hoist it out of the
##             work-group loop they vectorise); without it a work-item splits its flat id per dimension
<%
def load(t, ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"{ptr}[{at}]" if t == "uchar" else f"(({ct}){ptr}[{at}])"
def vtype(t):
    return "uchar" if t == "uchar" else ct
def store(val, at):
    if out_t == "half":
        return f"vstore_half_rte({val}, {at}, out)"
    if out_bool:
        return f"out[{at}] = (uchar)(({val}) != 0)"
    return f"out[{at}] = ({out_t})({val})"
%>
// integer power by squaring (x ** n for int tensors); a negative n gives 0 unless |x| == 1
inline long clnet_ipow(long x, long n)
{
    if (n < 0) return x == 1 ? 1 : (x == -1 ? ((n & 1) ? -1 : 1) : 0);
    long r = 1;
    while (n) {
        if (n & 1) r *= x;
        x *= x;
        n >>= 1;
    }
    return r;
}

__kernel void ${name}(const ${idx} n,
    __global ${out_t} *out, const ${idx} out_off
% for d in range(rank):
    , const ${idx} size${d}, const ${idx} out_st${d}
% endfor
% for k, t in enumerate(in_ts):
  % if t is None:
    , const ${ct} v${k}_arg
  % else:
    , __global const ${t} *in${k}, const ${idx} off${k}
    % for d in range(rank):
    , const ${idx} st${k}_${d}
    % endfor
  % endif
% endfor
)
{
% if grid2:
    const ${idx} inner = (${idx})get_global_id(0);
    if (inner >= size${rank - 1}) return;
    ${idx} rem = (${idx})get_global_id(1);
    ${idx} o = out_off + inner * out_st${rank - 1};
  % for k, t in enumerate(in_ts):
    % if t is not None:
    ${idx} i${k} = off${k} + inner * st${k}_${rank - 1};
    % endif
  % endfor
<% outer_dims = list(reversed(range(rank - 1))) %>\
% elif rank == 0:
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
    const ${idx} o = out_off + gid;
  % for k, t in enumerate(in_ts):
    % if t is not None:
    const ${idx} i${k} = off${k} + gid;
    % endif
  % endfor
<% outer_dims = [] %>\
% else:
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
    ${idx} rem = gid;
    ${idx} o = out_off;
  % for k, t in enumerate(in_ts):
    % if t is not None:
    ${idx} i${k} = off${k};
    % endif
  % endfor
<% outer_dims = list(reversed(range(rank))) %>\
% endif
% for d in outer_dims:
    {
  % if d > 0:
        // q and rem - q * size rather than %: LLVM fuses a / and % pair into a `freeze`
        // instruction that Oclgrind's uninitialized-value checker cannot execute.
        const ${idx} q = rem / size${d};
        const ${idx} c = rem - q * size${d};
        rem = q;
  % else:
        const ${idx} c = rem;
  % endif
        o += c * out_st${d};
  % for k, t in enumerate(in_ts):
    % if t is not None:
        i${k} += c * st${k}_${d};
    % endif
  % endfor
    }
% endfor
% for k, t in enumerate(in_ts):
  % if t is None:
    const ${ct} v${k} = v${k}_arg;
  % else:
    const ${vtype(t)} v${k} = ${load(t, f"in{k}", f"i{k}")};
  % endif
% endfor
    ${store(expr, "o")};
}
