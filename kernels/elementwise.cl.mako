## One kernel per elementwise expression, or per fused group of them (clnet.compiler.fusion).
##   results   C expression of each output over the loaded operands v0, v1, ... (one output: the op's
##             expression; a fused group: its outputs, after `body`)
##   body      C statements run before the results (a fused group's intermediate values), or ()
##   outs      (storage type, is_bool) of each output (a bool output stores expr != 0 as 0/1)
##   in_ts     per operand: its storage type (bool/uchar operands stay uchar so they can be conditions),
##             None for a scalar argument passed by value in the compute type `ct` (so a new scalar never
##             recompiles), or ("scalar", C type) for a scalar of its own type (fused groups)
##   native    operands are loaded in their own type (fused groups: each member casts what it reads)
##             instead of being converted to `ct`
##   rank      0 means every tensor operand is contiguous with the outputs: index = offset + gid;
##             otherwise the number of (collapsed) dimensions, whose sizes and per-operand strides
##             arrive as arguments, so a new shape of the same rank never recompiles
##   idx       index type: int, or long for tensors past 2**31 elements
##   grid2     (rank >= 2) a 2-D range: dimension 0 walks the innermost dimension, dimension 1 the
##             flattened outer ones, so no work-item divides for its inner coordinate and the outer
##             decomposition is the same for a whole work-group (CPU compilers hoist it out of the
##             work-group loop they vectorise); without it a work-item splits its flat id per dimension
<%
def is_scalar(t):
    return t is None or isinstance(t, tuple)
def scalar_t(t):
    return ct if t is None else t[1]
def load(t, ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    if t == "uchar" or native:
        return f"{ptr}[{at}]"
    return f"(({ct}){ptr}[{at}])"
def vtype(t):
    if t == "half":
        return "float"
    return t if (t == "uchar" or native) else ct
def store(j, val, at):
    out_t, out_bool = outs[j]
    if out_t == "half":
        return f"vstore_half_rte({val}, {at}, out{j})"
    if out_bool:
        return f"out{j}[{at}] = (uchar)(({val}) != 0)"
    return f"out{j}[{at}] = ({out_t})({val})"
nout = len(outs)
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

__kernel void ${name}(const ${idx} n
% for j in range(nout):
    , __global ${outs[j][0]} *out${j}, const ${idx} out${j}_off
% endfor
% for d in range(rank):
    , const ${idx} size${d}
  % for j in range(nout):
    , const ${idx} out${j}_st${d}
  % endfor
% endfor
% for k, t in enumerate(in_ts):
  % if is_scalar(t):
    , const ${scalar_t(t)} v${k}_arg
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
  % for j in range(nout):
    ${idx} o${j} = out${j}_off + inner * out${j}_st${rank - 1};
  % endfor
  % for k, t in enumerate(in_ts):
    % if not is_scalar(t):
    ${idx} i${k} = off${k} + inner * st${k}_${rank - 1};
    % endif
  % endfor
<% outer_dims = list(reversed(range(rank - 1))) %>\
% elif rank == 0:
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
  % for j in range(nout):
    const ${idx} o${j} = out${j}_off + gid;
  % endfor
  % for k, t in enumerate(in_ts):
    % if not is_scalar(t):
    const ${idx} i${k} = off${k} + gid;
    % endif
  % endfor
<% outer_dims = [] %>\
% else:
    const ${idx} gid = (${idx})get_global_id(0);
    if (gid >= n) return;
    ${idx} rem = gid;
  % for j in range(nout):
    ${idx} o${j} = out${j}_off;
  % endfor
  % for k, t in enumerate(in_ts):
    % if not is_scalar(t):
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
  % for j in range(nout):
        o${j} += c * out${j}_st${d};
  % endfor
  % for k, t in enumerate(in_ts):
    % if not is_scalar(t):
        i${k} += c * st${k}_${d};
    % endif
  % endfor
    }
% endfor
% for k, t in enumerate(in_ts):
  % if is_scalar(t):
    const ${scalar_t(t)} v${k} = v${k}_arg;
  % else:
    const ${vtype(t)} v${k} = ${load(t, f"in{k}", f"i{k}")};
  % endif
% endfor
% for line in body:
    ${line}
% endfor
% for j in range(nout):
    ${store(j, results[j], f"o{j}")};
% endfor
}
