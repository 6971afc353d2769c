## Recurrent cells: the pointwise part of one time step, forward and backward, one work-item per (b, j)
## of the (B, H) state (n = B * H). The matrix products (x W_ih^T for every step at once, h W_hh^T per
## step) are clnet.ops.matmul's; these kernels fuse everything between them, as cuDNN and PyTorch do.
## Gate blocks follow PyTorch's layout: row b of a (B, G*H) gate tensor is G blocks of H values.
##
##   cell      lstm  (G = 4: i, f, g, o)   c' = f c + i g,  h' = o tanh(c')
##             gru   (G = 3: r, z, n)      n = tanh(gi_n + r gh_n),  h' = (1 - z) n + z h
##             rnn_tanh | rnn_relu (G = 1) h' = act(gi + gh)
##   kernel    forward | backward
##   t, acc    storage and arithmetic C types
##   packed    rows b >= active (sequences of a PackedSequence that have ended, or not yet begun when
##             running in reverse) keep their state: forward copies h (and c) from the step before
##             (h_prev is then an argument for every cell), backward passes the state's gradient
##             through (zero gate gradients; lstm/rnn write it to `skip`, which the launcher adds to
##             the recurrent gradient dG W_hh; gru through carry_out). Without it, active == B.
##
## forward:  gi (x W_ih^T + biases: b_ih + b_hh for lstm/rnn, b_ih for gru) and gh (h W_hh^T, + b_hh for
##           gru, whose reset gate multiplies it) -> h' (and c' for lstm) and a workspace the backward
##           reads: lstm the four activated gates, gru r, z, n and gh_n (4 blocks).
## backward: the gradient reaching h' is dh_mm + dh_out (the recurrent part, dG_{t+1} W_hh, and the
##           layer output's); `carry` is the rest of the state's gradient: lstm dc', gru the direct path
##           z * dh' of the step after. Writes the gate gradients dg (lstm, rnn: of the summed gate
##           pre-activations; gru: of gi, with dgh next to it) and carry_out for the step before.
<%page args="cell, kernel, t, acc, packed=False"/>
<%
G = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}[cell]

def ld(ptr, at):
    if t == "half":
        return f"vload_half({at}, {ptr})"
    return f"(({acc}){ptr}[{at}])"

def st(ptr, at, val):
    if t == "half":
        return f"vstore_half_rte(({acc})({val}), {at}, {ptr})"
    return f"{ptr}[{at}] = ({t})({val})"
%>\
inline ${acc} sigm(const ${acc} v) { return 1 / (1 + exp(-v)); }

% if kernel == "forward":
__kernel void ${cell}_forward(const int B, const int H, const int active,
                              __global const ${t} *gi, const int gi_off,
                              __global const ${t} *gh, const int gh_off,
% if cell in ("lstm", "gru"):
                              __global const ${t} *prev, const int prev_off,
% endif
% if packed and cell != "gru":
                              __global const ${t} *h_prev, const int h_prev_off,
% endif
% if cell == "lstm":
                              __global ${t} *c_out, const int c_off,
% endif
% if cell in ("lstm", "gru"):
                              __global ${t} *ws, const int ws_off,
% endif
                              __global ${t} *h_out, const int h_off)
{
    const int gid = get_global_id(0);
    if (gid >= B * H) return;
    const int b = gid / H, j = gid - b * H;
    const int row = b * ${G} * H + j;
% if packed:
    if (b >= active) {   /* this sequence is not running at this step: its state stays */
  % if cell == "gru":
        ${st("h_out", "h_off + gid", ld("prev", "prev_off + gid"))};
  % else:
        ${st("h_out", "h_off + gid", ld("h_prev", "h_prev_off + gid"))};
  % endif
  % if cell == "lstm":
        ${st("c_out", "c_off + gid", ld("prev", "prev_off + gid"))};
  % endif
  % if cell in ("lstm", "gru"):
        for (int k = 0; k < 4; k++) ${st("ws", "ws_off + b * 4 * H + j + k * H", "0")};
  % endif
        return;
    }
% endif
% if cell == "lstm":
    const ${acc} i = sigm(${ld("gi", "gi_off + row")} + ${ld("gh", "gh_off + row")});
    const ${acc} f = sigm(${ld("gi", "gi_off + row + H")} + ${ld("gh", "gh_off + row + H")});
    const ${acc} g = tanh(${ld("gi", "gi_off + row + 2 * H")} + ${ld("gh", "gh_off + row + 2 * H")});
    const ${acc} o = sigm(${ld("gi", "gi_off + row + 3 * H")} + ${ld("gh", "gh_off + row + 3 * H")});
    const ${acc} c = f * ${ld("prev", "prev_off + gid")} + i * g;
    const int wrow = b * 4 * H + j;
    ${st("ws", "ws_off + wrow", "i")};
    ${st("ws", "ws_off + wrow + H", "f")};
    ${st("ws", "ws_off + wrow + 2 * H", "g")};
    ${st("ws", "ws_off + wrow + 3 * H", "o")};
    ${st("c_out", "c_off + gid", "c")};
    ${st("h_out", "h_off + gid", "o * tanh(c)")};
% elif cell == "gru":
    const ${acc} r = sigm(${ld("gi", "gi_off + row")} + ${ld("gh", "gh_off + row")});
    const ${acc} z = sigm(${ld("gi", "gi_off + row + H")} + ${ld("gh", "gh_off + row + H")});
    const ${acc} ghn = ${ld("gh", "gh_off + row + 2 * H")};
    const ${acc} nn = tanh(${ld("gi", "gi_off + row + 2 * H")} + r * ghn);
    const int wrow = b * 4 * H + j;
    ${st("ws", "ws_off + wrow", "r")};
    ${st("ws", "ws_off + wrow + H", "z")};
    ${st("ws", "ws_off + wrow + 2 * H", "nn")};
    ${st("ws", "ws_off + wrow + 3 * H", "ghn")};
    ${st("h_out", "h_off + gid", "(1 - z) * nn + z * " + ld("prev", "prev_off + gid"))};
% else:
    const ${acc} a = ${ld("gi", "gi_off + row")} + ${ld("gh", "gh_off + row")};
  % if cell == "rnn_tanh":
    ${st("h_out", "h_off + gid", "tanh(a)")};
  % else:
    ${st("h_out", "h_off + gid", "(a > 0 ? a : 0)")};
  % endif
% endif
}

% else:
__kernel void ${cell}_backward(const int B, const int H, const int active,
                               __global const ${t} *dh_mm, const int dh_mm_off,
                               __global const ${t} *dh_out, const int dh_out_off,
% if cell in ("lstm", "gru"):
                               __global const ${t} *carry, const int carry_off,
                               __global const ${t} *ws, const int ws_off,
                               __global const ${t} *prev, const int prev_off,
% endif
% if cell == "lstm":
                               __global const ${t} *c_new, const int c_new_off,
% endif
% if cell in ("rnn_tanh", "rnn_relu"):
                               __global const ${t} *h_new, const int h_new_off,
% endif
% if cell == "gru":
                               __global ${t} *dgh, const int dgh_off,
% endif
% if cell in ("lstm", "gru"):
                               __global ${t} *carry_out, const int carry_out_off,
% endif
% if packed and cell != "gru":
                               __global ${t} *skip, const int skip_off,
% endif
                               __global ${t} *dg, const int dg_off)
{
    const int gid = get_global_id(0);
    if (gid >= B * H) return;
    const int b = gid / H, j = gid - b * H;
    const ${acc} dh = ${ld("dh_mm", "dh_mm_off + gid")} + ${ld("dh_out", "dh_out_off + gid")};
    const int row = b * ${G} * H + j;
% if packed:
    if (b >= active) {   /* the state passed through unchanged: so does its gradient */
        for (int k = 0; k < ${G}; k++) ${st("dg", "dg_off + row + k * H", "0")};
  % if cell == "gru":
        for (int k = 0; k < ${G}; k++) ${st("dgh", "dgh_off + row + k * H", "0")};
        ${st("carry_out", "carry_out_off + gid", "dh + " + ld("carry", "carry_off + gid"))};
  % else:
        ${st("skip", "skip_off + gid", "dh")};
  % endif
  % if cell == "lstm":
        ${st("carry_out", "carry_out_off + gid", ld("carry", "carry_off + gid"))};
  % endif
        return;
    }
  % if cell != "gru":
    ${st("skip", "skip_off + gid", "0")};
  % endif
% endif
% if cell == "lstm":
    const int wrow = b * 4 * H + j;
    const ${acc} i = ${ld("ws", "ws_off + wrow")}, f = ${ld("ws", "ws_off + wrow + H")};
    const ${acc} g = ${ld("ws", "ws_off + wrow + 2 * H")}, o = ${ld("ws", "ws_off + wrow + 3 * H")};
    const ${acc} tc = tanh(${ld("c_new", "c_new_off + gid")});
    const ${acc} dc = ${ld("carry", "carry_off + gid")} + dh * o * (1 - tc * tc);
    ${st("dg", "dg_off + row", "dc * g * i * (1 - i)")};
    ${st("dg", "dg_off + row + H", "dc * " + ld("prev", "prev_off + gid") + " * f * (1 - f)")};
    ${st("dg", "dg_off + row + 2 * H", "dc * i * (1 - g * g)")};
    ${st("dg", "dg_off + row + 3 * H", "dh * tc * o * (1 - o)")};
    ${st("carry_out", "carry_out_off + gid", "dc * f")};
% elif cell == "gru":
    const ${acc} dht = dh + ${ld("carry", "carry_off + gid")};
    const int wrow = b * 4 * H + j;
    const ${acc} r = ${ld("ws", "ws_off + wrow")}, z = ${ld("ws", "ws_off + wrow + H")};
    const ${acc} nn = ${ld("ws", "ws_off + wrow + 2 * H")}, ghn = ${ld("ws", "ws_off + wrow + 3 * H")};
    const ${acc} dn = dht * (1 - z) * (1 - nn * nn);
    const ${acc} dr = dn * ghn * r * (1 - r);
    const ${acc} dz = dht * (${ld("prev", "prev_off + gid")} - nn) * z * (1 - z);
    ${st("dg", "dg_off + row", "dr")};
    ${st("dg", "dg_off + row + H", "dz")};
    ${st("dg", "dg_off + row + 2 * H", "dn")};
    ${st("dgh", "dgh_off + row", "dr")};
    ${st("dgh", "dgh_off + row + H", "dz")};
    ${st("dgh", "dgh_off + row + 2 * H", "dn * r")};
    ${st("carry_out", "carry_out_off + gid", "dht * z")};
% elif cell == "rnn_tanh":
    const ${acc} hv = ${ld("h_new", "h_new_off + gid")};
    ${st("dg", "dg_off + row", "dh * (1 - hv * hv)")};
% else:
    ${st("dg", "dg_off + row", "(" + ld("h_new", "h_new_off + gid") + " > 0 ? dh : 0)")};
% endif
}
% endif
