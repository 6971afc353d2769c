# After karpathy/micrograd test/test_engine.py: the same scalar expressions computed by a tiny scalar
# autograd engine and by torch (legacy torch.Tensor([...]).double(), requires_grad set as an attribute,
# relu, **, division by and of tensors), values and gradients compared. The engine below is our own
# (micrograd's Value, written afresh). Only the import differs between clnet and PyTorch.
import clnet as torch


class Scalar:
    """A number that remembers how it was made, for reverse-mode differentiation."""

    def __init__(self, value, parents=(), rule=None):
        self.value, self.grad = value, 0.0
        self.parents, self.rule = parents, rule  # rule(g) -> gradients for the parents

    @staticmethod
    def of(x):
        return x if isinstance(x, Scalar) else Scalar(x)

    def __add__(self, other):
        other = Scalar.of(other)
        return Scalar(self.value + other.value, (self, other), lambda g: (g, g))

    def __mul__(self, other):
        other = Scalar.of(other)
        return Scalar(self.value * other.value, (self, other), lambda g: (g * other.value, g * self.value))

    def __pow__(self, k):
        return Scalar(self.value ** k, (self,), lambda g: (g * k * self.value ** (k - 1),))

    def relu(self):
        return Scalar(max(self.value, 0.0), (self,), lambda g: (g * (self.value > 0),))

    __radd__ = __add__
    __rmul__ = __mul__

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-Scalar.of(other))

    def __rsub__(self, other):
        return Scalar.of(other) - self

    def __truediv__(self, other):
        return self * Scalar.of(other) ** -1

    def __rtruediv__(self, other):
        return Scalar.of(other) * self ** -1

    def backward(self):
        order, seen = [], set()

        def visit(node):
            if id(node) not in seen:
                seen.add(id(node))
                for p in node.parents:
                    visit(p)
                order.append(node)
        visit(self)
        self.grad = 1.0
        for node in reversed(order):
            if node.rule is not None:
                for p, g in zip(node.parents, node.rule(node.grad)):
                    p.grad += g


def sanity_check():
    x = Scalar(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xmg, ymg = x, y

    x = torch.Tensor([-4.0]).double()
    x.requires_grad = True
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xpt, ypt = x, y

    assert ymg.value == ypt.data.item()  # forward
    assert xmg.grad == xpt.grad.item()  # backward
    return abs(ymg.value - ypt.data.item()) + abs(xmg.grad - xpt.grad.item())


def more_ops():
    a = Scalar(-4.0)
    b = Scalar(2.0)
    c = a + b
    d = a * b + b ** 3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e ** 2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    amg, bmg, gmg = a, b, g

    a = torch.Tensor([-4.0]).double()
    b = torch.Tensor([2.0]).double()
    a.requires_grad = True
    b.requires_grad = True
    c = a + b
    d = a * b + b ** 3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e ** 2
    g = f / 2.0
    g = g + 10.0 / f
    g.backward()
    apt, bpt, gpt = a, b, g

    tol = 1e-6
    assert abs(gmg.value - gpt.data.item()) < tol
    assert abs(amg.grad - apt.grad.item()) < tol
    assert abs(bmg.grad - bpt.grad.item()) < tol
    return abs(gmg.value - gpt.data.item()) + abs(amg.grad - apt.grad.item()) + abs(bmg.grad - bpt.grad.item())


difference = sanity_check() + more_ops()
print('largest difference between the scalar engine and torch:', difference)
