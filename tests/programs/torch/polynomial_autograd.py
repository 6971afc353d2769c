# After pytorch/tutorials beginner_source/examples_autograd/polynomial_autograd.py ("Learning PyTorch with
# Examples"): the cubic fit of sin(x) with autograd computing the gradients and the update done under
# torch.no_grad(). Cut: 2000 -> 600 steps. Only the import differs between clnet and PyTorch.
import math

import clnet as torch

dtype = torch.float
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_default_device(device)

x = torch.linspace(-math.pi, math.pi, 2000, dtype=dtype)
y = torch.sin(x)

# coefficients that autograd tracks
a = torch.randn((), dtype=dtype, requires_grad=True)
b = torch.randn((), dtype=dtype, requires_grad=True)
c = torch.randn((), dtype=dtype, requires_grad=True)
d = torch.randn((), dtype=dtype, requires_grad=True)

learning_rate = 1e-6
for t in range(600):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3

    loss = (y_pred - y).pow(2).sum()
    if t % 100 == 99:
        print(t, loss.item())

    loss.backward()

    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad

        a.grad = None
        b.grad = None
        c.grad = None
        d.grad = None

print(f'Result: y = {a.item()} + {b.item()} x + {c.item()} x^2 + {d.item()} x^3')
