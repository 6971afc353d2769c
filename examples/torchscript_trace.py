"""The lecture's "Static PyTorch: TorchScript" slide on clnet: only `import torch` changed.

torch.jit.trace runs the cell once and keeps what it did as a static graph; printing it shows the graph,
and the traced cell runs it. (`traced_cell.save("cell.pt")` would write it to a file that
`clnet.jit.load` runs without this code.)

    python examples/torchscript_trace.py
"""
import clnet as torch


class MyCell(torch.nn.Module):
    def __init__(self):
        super(MyCell, self).__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x, h):
        new_h = torch.tanh(self.linear(x) + h)
        return new_h, new_h


my_cell = MyCell()
x, h = torch.rand(3, 4), torch.rand(3, 4)
traced_cell = torch.jit.trace(my_cell, (x, h))
print(traced_cell.graph)
traced_cell(x, h)
