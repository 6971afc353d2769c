## Fused optimizer updates: ONE launch updates up to `slots` parameters of one dtype (optimizer.py says
## which share a launch).
##
## Slot k owns the work-groups [gstart_k, gstart_k + ceil(n_k / local size)): the slot is chosen from the
## group id alone, so it is uniform across a work-group (no divergence on GPUs, and PoCL hoists the choice
## out of its work-item loop and still vectorizes the update; choosing by global id measured 9x slower).
## Its parameter p_k, gradient g_k and state buffers (contiguous, offset 0) are separate arguments,
## because OpenCL 1.2 has no arrays of buffers. Unused slots repeat slot 0's buffers with n = 0.
## Every hyper-parameter (lr, betas, bias corrections, ...) is a scalar argument: a new learning rate or
## step count never rebuilds. Template switches only pick the update's algebra (as PyTorch's branches do).
##
##   rule:   sgd | adam | rmsprop | adagrad | adadelta | adamax | nadam | radam
##   states: names of the per-parameter state buffers the rule reads and writes, in argument order
##   t/acc:  storage and arithmetic types;  flags: maximize, weight_decay, momentum, nesterov,
##           decoupled (AdamW), amsgrad, centered (booleans; unused ones are False)
## The arithmetic follows torch/optim/*.py (single-tensor path) operation by operation, so float32
## results agree with PyTorch to rounding.
<%page args="rule, t, acc, slots, states, maximize=False, weight_decay=False, momentum=False, nesterov=False, decoupled=False, amsgrad=False, centered=False"/>
<%def name="slot_args(k)">const int gstart${k}, const int n${k},
    __global ${t} *p${k}, const int p${k}_off, __global const ${t} *g${k}, const int g${k}_off\
% for s in states:
, __global ${t} *${s}${k}\
% endfor
</%def>
__kernel void ${rule}_step(
% for k in range(slots):
    ${slot_args(k)},
% endfor
% if rule == "sgd":
    const ${acc} lr, const ${acc} mom, const ${acc} one_minus_dampening, const ${acc} wd, const int first)
% elif rule == "adam":
    const ${acc} one_minus_beta1, const ${acc} beta2, const ${acc} one_minus_beta2, const ${acc} eps,
    const ${acc} wd, const ${acc} decay, const ${acc} step_size, const ${acc} bc2_sqrt)
% elif rule == "rmsprop":
    const ${acc} lr, const ${acc} alpha, const ${acc} one_minus_alpha, const ${acc} eps, const ${acc} wd,
    const ${acc} mom)
% elif rule == "adagrad":
    const ${acc} clr, const ${acc} eps, const ${acc} wd)
% elif rule == "adadelta":
    const ${acc} lr, const ${acc} rho, const ${acc} one_minus_rho, const ${acc} eps, const ${acc} wd)
% elif rule == "adamax":
    const ${acc} one_minus_beta1, const ${acc} beta2, const ${acc} eps, const ${acc} wd, const ${acc} clr)
% elif rule == "nadam":
    const ${acc} one_minus_beta1, const ${acc} beta2, const ${acc} one_minus_beta2, const ${acc} eps,
    const ${acc} wd, const ${acc} decay, const ${acc} bc2, const ${acc} c_grad, const ${acc} c_avg)
% elif rule == "radam":
    const ${acc} one_minus_beta1, const ${acc} beta2, const ${acc} one_minus_beta2, const ${acc} eps,
    const ${acc} wd, const ${acc} decay, const ${acc} lr, const ${acc} bc1, const ${acc} bc2_sqrt,
    const ${acc} rect, const int rectify)
% endif
{
    const int grp = get_group_id(0), lid = get_local_id(0), lsz = get_local_size(0);
<%
def pick(fmt):
    # a branch-free choice by slot (nested ?: on loop-invariant values): LLVM hoists it out of PoCL's
    # work-item loop; an if/else chain there left the loop unvectorized (measured 9x slower)
    expr = fmt.format(k=0)
    for k in range(1, slots):
        expr = f"(grp >= gstart{k} ? {fmt.format(k=k)} : {expr})"
    return expr
%>
    __global ${t} *p = ${pick("p{k} + p{k}_off")};
    __global const ${t} *g = ${pick("g{k} + g{k}_off")};
% for s in states:
    __global ${t} *${s} = ${pick(s + "{k}")};
% endfor
    const int i = (grp - ${pick("gstart{k}")}) * lsz + lid;
    const int n = ${pick("n{k}")};
    if (i >= n) return;

    ${acc} grad = (${acc})g[i];
% if maximize:
    grad = -grad;
% endif
    ${acc} param = (${acc})p[i];

% if rule == "sgd":
  % if weight_decay:
    grad = grad + wd * param;
  % endif
  % if momentum:
    ${acc} buf = first ? grad : (${acc})momentum_buffer[i] * mom + one_minus_dampening * grad;
    momentum_buffer[i] = (${t})buf;
    % if nesterov:
    grad = grad + mom * buf;
    % else:
    grad = buf;
    % endif
  % endif
    param = param + (-lr) * grad;

% elif rule == "adam":
  % if weight_decay and decoupled:
    param = param * decay;
  % elif weight_decay:
    grad = grad + wd * param;
  % endif
    ${acc} m = (${acc})exp_avg[i];
    m = m + one_minus_beta1 * (grad - m);                      // exp_avg.lerp_(grad, 1 - beta1)
    const ${acc} v = (${acc})exp_avg_sq[i] * beta2 + one_minus_beta2 * grad * grad;
    exp_avg[i] = (${t})m;
    exp_avg_sq[i] = (${t})v;
  % if amsgrad:
    const ${acc} vmax = fmax((${acc})max_exp_avg_sq[i], v);
    max_exp_avg_sq[i] = (${t})vmax;
    const ${acc} denom = sqrt(vmax) / bc2_sqrt + eps;
  % else:
    const ${acc} denom = sqrt(v) / bc2_sqrt + eps;
  % endif
    param = param + (-step_size) * m / denom;              // addcdiv_

% elif rule == "rmsprop":
  % if weight_decay:
    grad = grad + wd * param;
  % endif
    const ${acc} sq = (${acc})square_avg[i] * alpha + one_minus_alpha * grad * grad;
    square_avg[i] = (${t})sq;
  % if centered:
    ${acc} ga = (${acc})grad_avg[i];
    ga = ga + one_minus_alpha * (grad - ga);                       // grad_avg.lerp_(grad, 1 - alpha)
    grad_avg[i] = (${t})ga;
    const ${acc} avg = sqrt(sq - ga * ga) + eps;
  % else:
    const ${acc} avg = sqrt(sq) + eps;
  % endif
  % if momentum:
    const ${acc} buf = (${acc})momentum_buffer[i] * mom + grad / avg;
    momentum_buffer[i] = (${t})buf;
    param = param + (-lr) * buf;
  % else:
    param = param + (-lr) * grad / avg;
  % endif

% elif rule == "adagrad":
  % if weight_decay:
    grad = grad + wd * param;
  % endif
    const ${acc} s = (${acc})sum[i] + grad * grad;
    sum[i] = (${t})s;
    param = param + (-clr) * grad / (sqrt(s) + eps);

% elif rule == "adadelta":
  % if weight_decay:
    grad = grad + wd * param;
  % endif
    const ${acc} sq = (${acc})square_avg[i] * rho + one_minus_rho * grad * grad;
    square_avg[i] = (${t})sq;
    const ${acc} delta = sqrt((${acc})acc_delta[i] + eps) / sqrt(sq + eps) * grad;
    acc_delta[i] = (${t})((${acc})acc_delta[i] * rho + one_minus_rho * delta * delta);
    param = param + (-lr) * delta;

% elif rule == "adamax":
  % if weight_decay:
    grad = grad + wd * param;
  % endif
    ${acc} m = (${acc})exp_avg[i];
    m = m + one_minus_beta1 * (grad - m);                      // exp_avg.lerp_(grad, 1 - beta1)
    const ${acc} u = fmax((${acc})exp_inf[i] * beta2, fabs(grad) + eps);
    exp_avg[i] = (${t})m;
    exp_inf[i] = (${t})u;
    param = param + (-clr) * m / u;

% elif rule == "nadam" or rule == "radam":
  % if weight_decay and decoupled:
    param = param * decay;
  % elif weight_decay:
    grad = grad + wd * param;
  % endif
    ${acc} m = (${acc})exp_avg[i];
    m = m + one_minus_beta1 * (grad - m);                      // exp_avg.lerp_(grad, 1 - beta1)
    const ${acc} v = (${acc})exp_avg_sq[i] * beta2 + one_minus_beta2 * grad * grad;
    exp_avg[i] = (${t})m;
    exp_avg_sq[i] = (${t})v;
  % if rule == "nadam":
    const ${acc} denom = sqrt(v / bc2) + eps;
    param = param + c_grad * grad / denom;
    param = param + c_avg * m / denom;
  % else:
    const ${acc} corrected = m / bc1;
    param = param - (rectify ? corrected * lr * (bc2_sqrt / (sqrt(v) + eps)) * rect : corrected * lr);
  % endif
% endif
    p[i] = (${t})param;
}
