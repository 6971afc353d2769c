"""L-BFGS (Nocedal & Wright, Numerical Optimization, algorithms 7.4 and 3.5/3.6 for the strong Wolfe line
search), with torch.optim.LBFGS's options, defaults, stopping rules and state.

The parameters are handled as one flat vector: the two-loop recursion and the line search are a few
dot products and axpys on the device per iteration; the scalars they produce (curvature y.s, directional
derivatives, losses) decide the control flow and are read on the host, as PyTorch reads them.
"""
from __future__ import annotations

import math

from ..autograd import enable_grad, no_grad
from ..ops import elementwise as _ew
from ..ops import movement as _mv
from ..ops import reduce as _red
from ..ops.creation import zeros
from .optimizer import Optimizer


def _dot(a, b) -> float:
    return float(_red.sum(_ew.mul(a, b)).item())


def _abs_max(a) -> float:
    return float(_red.amax(_ew.abs(a)).item())


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to bounds (default: the
    interval between x1 and x2); the interval's midpoint when the cubic has no real minimiser."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(pos, lo), hi)
    return (lo + hi) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step t along d meeting the strong Wolfe conditions: bracket, then zoom by cubic interpolation.
    Returns (f_new, g_new, t, function evaluations)."""
    d_norm = _abs_max(d)
    f_new, g_new = obj_func(x, t, d)
    evals = 1
    gtd_new = _dot(g_new, d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # extrapolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point meets the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if len(bracket) == 1 or bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a point too close to an end of the bracket is moved inside (PyTorch's safeguard)
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new
    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, evals


class LBFGS(Optimizer):
    """Limited-memory BFGS over all parameters as one vector; step(closure) runs up to max_iter iterations
    (the closure re-evaluates the model and returns the loss), with line_search_fn=None (a fixed step lr)
    or "strong_wolfe". Only one parameter group, as in PyTorch."""

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        if line_search_fn not in (None, "strong_wolfe"):
            raise RuntimeError("only 'strong_wolfe' is supported")
        self._params = self.param_groups[0]["params"]

    def _numel(self) -> int:
        return sum(p.numel() for p in self._params)

    def _gather_flat_grad(self):
        views = [_mv.reshape(p.grad, (-1,)) if p.grad is not None else zeros((p.numel(),), dtype=p.dtype,
                                                                               device=p.device)
                 for p in self._params]
        return _mv.concat(views, 0)

    def _add_grad(self, step_size: float, update) -> None:
        offset = 0
        with no_grad():
            for p in self._params:
                n = p.numel()
                p.add_(_ew.mul(_mv.reshape(_mv.narrow(update, 0, offset, n), p.shape), step_size))
                offset += n

    def _clone_params(self):
        return [_mv.clone(p.detach()) for p in self._params]

    def _set_params(self, values) -> None:
        with no_grad():
            for p, v in zip(self._params, values):
                p.copy_(v)

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        with enable_grad():
            loss = float(closure())
        flat_grad = self._gather_flat_grad()
        self._set_params(x)
        return loss, flat_grad

    def step(self, closure):
        """Run the iterations; returns the loss the closure gave at the start."""
        if closure is None:
            raise RuntimeError("LBFGS.step requires a closure that re-evaluates the model and returns the loss")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        history_size, line_search_fn = group["history_size"], group["line_search_fn"]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        with no_grad():
            flat_grad = self._gather_flat_grad()
            if _abs_max(flat_grad) <= tol_grad:
                return orig_loss
            d, t = state.get("d"), state.get("t")
            old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
            H_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
            n_iter = 0
            while n_iter < max_iter:
                n_iter += 1
                state["n_iter"] += 1
                if state["n_iter"] == 1:
                    d = _ew.neg(flat_grad)
                    old_dirs, old_stps, ro, H_diag = [], [], [], 1.0
                else:
                    y = _ew.sub(flat_grad, prev_flat_grad)
                    s = _ew.mul(d, t)
                    ys = _dot(y, s)
                    if ys > 1e-10:  # keep the pair only with positive curvature
                        if len(old_dirs) == history_size:
                            old_dirs.pop(0)
                            old_stps.pop(0)
                            ro.pop(0)
                        old_dirs.append(y)
                        old_stps.append(s)
                        ro.append(1.0 / ys)
                        H_diag = ys / _dot(y, y)
                    # two-loop recursion: d = -H g
                    al = [0.0] * len(old_dirs)
                    q = _ew.neg(flat_grad)
                    for i in range(len(old_dirs) - 1, -1, -1):
                        al[i] = _dot(old_stps[i], q) * ro[i]
                        q = _ew.sub(q, _ew.mul(old_dirs[i], al[i]))
                    r = _ew.mul(q, H_diag)
                    for i in range(len(old_dirs)):
                        be_i = _dot(old_dirs[i], r) * ro[i]
                        r = _ew.add(r, _ew.mul(old_stps[i], al[i] - be_i))
                    d = r
                prev_flat_grad = _mv.clone(flat_grad)
                prev_loss = loss
                if state["n_iter"] == 1:
                    t = min(1.0, 1.0 / float(_red.sum(_ew.abs(flat_grad)).item())) * lr
                else:
                    t = lr
                gtd = _dot(flat_grad, d)
                if gtd > -tol_change:  # not a descent direction
                    break
                if line_search_fn == "strong_wolfe":
                    x_init = self._clone_params()
                    loss, flat_grad, t, ls_evals = _strong_wolfe(
                        lambda x, step, direction: self._directional_evaluate(closure, x, step, direction),
                        x_init, t, d, loss, flat_grad, gtd)
                    self._add_grad(t, d)
                    opt_cond = _abs_max(flat_grad) <= tol_grad
                else:
                    self._add_grad(t, d)
                    ls_evals = 0
                    opt_cond = False
                    if n_iter != max_iter:
                        with enable_grad():
                            loss = float(closure())
                        flat_grad = self._gather_flat_grad()
                        opt_cond = _abs_max(flat_grad) <= tol_grad
                        ls_evals = 1
                current_evals += ls_evals
                state["func_evals"] += ls_evals
                if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                    break
                if _abs_max(d) * abs(t) <= tol_change or abs(loss - prev_loss) < tol_change:
                    break
            state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                         prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss

    def load_state_dict(self, state_dict: dict) -> None:
        """Options, and the state (direction, history) as saved by state_dict()."""
        groups = state_dict["param_groups"]
        if len(groups) != 1:
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, LBFGS has one")
        for k, v in groups[0].items():
            if k != "params":
                self.param_groups[0][k] = v
        saved = state_dict["state"]
        entry = saved.get(0, saved.get("0"))
        self.state.clear()
        if entry:
            self.state[self._params[0]] = dict(entry)
