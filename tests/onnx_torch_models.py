"""PyTorch models whose ONNX files (written by PyTorch's own exporter) tests/test_onnx_import.py imports.

Each builder returns (model, example inputs); together they exercise the operators PyTorch's exporter
writes for the layers clnet has: Gemm, Conv (strided, grouped, 1-D, dilated, SAME), BatchNormalization,
pooling (ceil_mode, padding excluded from averages, global), activations, Softmax/LogSoftmax, LayerNorm,
InstanceNorm, Gather (Embedding), Resize (nearest, bilinear), OneHot, the shape operators (Shape/Gather/Concat/Reshape, Slice with steps,
Split, Pad reflect/edge, Expand, Tile, Where), reductions, and LSTM/GRU/RNN.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class TwoLayer(nn.Module):
    """The lecture's two-layer net (its ONNX slide), with a view(size(0), -1) for the Shape ops."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(20, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.view(x.size(0), -1))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.drop, self.fc = nn.Dropout(0.3), nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.c1(x)))
        x = self.avg(self.pool(F.leaky_relu(self.c2(x), 0.1)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.log_softmax(self.fc(self.drop(x)), dim=1)


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.prelu = nn.PReLU(6)

    def forward(self, x):
        return torch.cat([F.elu(x), F.selu(x), F.softplus(x), F.hardsigmoid(x), F.hardswish(x), torch.sigmoid(x),
                          F.softsign(x), F.mish(x), F.celu(x, 0.7), F.hardtanh(x, -0.5, 0.5), F.relu6(x * 4),
                          self.prelu(x), torch.tanh(x), F.softmax(x, -1), F.gelu(x), F.gelu(x, approximate="tanh"),
                          torch.erf(x)], 1)


class Shapes(nn.Module):
    def forward(self, x, idx):
        n = x.size(0)
        a = x.permute(0, 2, 1).reshape(n, -1)
        b, c = torch.chunk(x, 2, dim=1)
        d = x[:, 1:, ::2].flip(-1)
        e = x.unsqueeze(1).squeeze(1).sum(dim=(1, 2), keepdim=True)
        f = torch.where(x > 0, x, x * 0.5).amax(-1) - x.mean(-1) + x.prod(-1)
        g = x.index_select(2, idx) + torch.gather(x, 2, idx.view(1, 1, -1).expand(n, x.size(1), -1))
        h = F.pad(x, (1, 2), mode="reflect")
        i = F.pad(x, (2, 1), mode="replicate")
        j = torch.clamp(x, -0.3, 0.4).pow(2) + x.abs().sqrt() + torch.exp(-x.abs()) * torch.log(1 + x.abs()) / 3
        return a, b * c, d, e, f, g, h, i, j, x.argmax(-1).float(), x.repeat(1, 2, 1)


class Embed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.ln = nn.Embedding(20, 6), nn.LayerNorm(6)
        self.inorm = nn.InstanceNorm1d(4, affine=True)

    def forward(self, tokens):
        e = self.ln(self.emb(tokens))
        return self.inorm(e.transpose(1, 2)[:, :4]), F.normalize(e, dim=-1)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 7, num_layers=2, bidirectional=True)
        self.gru = nn.GRU(14, 6, batch_first=True)
        self.rnn = nn.RNN(6, 4, nonlinearity="relu")

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        z, hz = self.gru(y.transpose(0, 1))
        w, _ = self.rnn(z.transpose(0, 1))
        return w, h, c, hz


class Conv1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.bn, self.pool = nn.Conv1d(4, 6, 3, padding=2, dilation=2), nn.BatchNorm1d(6), nn.MaxPool1d(2)
        self.c2 = nn.Conv2d(3, 4, (2, 3), padding="same")

    def forward(self, x, y):
        return self.pool(torch.tanh(self.bn(self.c(x)))), self.c2(y)


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.up1d = nn.ConvTranspose1d(4, 2, 4, stride=2)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def forward(self, x):
        y = self.depthwise(self.gn(self.up(x)))
        return y, self.up1d(y.mean(2))


class Reductions(nn.Module):
    """Scans, top-k, triangles, einsum and inverse trigonometry (CumSum, TopK, Trilu, Einsum, Asin...)."""

    def forward(self, x, y):
        values, indices = torch.topk(x, 2, dim=-1)
        return (torch.cumsum(x, 1), values, indices, torch.tril(x, -1), torch.triu(x, 1),
                torch.einsum("bij,bkj->bik", x, y), torch.atan(x) + torch.asin(x * 0.5) + torch.tan(x * 0.5),
                torch.fmod(x, 0.3))


class Resize(nn.Module):
    def forward(self, img, tokens):
        return (F.interpolate(img, scale_factor=2, mode="nearest"),
                F.interpolate(img, size=(7, 5), mode="bilinear", align_corners=False),
                F.interpolate(img, scale_factor=1.5, mode="bilinear", align_corners=True),
                F.one_hot(tokens, 6))


def randomize_batch_norms(model):
    """Running statistics that are not 0 and 1, so using them (or not) shows in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def build(name):
    """(model in eval mode, example inputs) for a model name of MODELS, the same on every call."""
    torch.manual_seed(0)
    model, args = {
        "two_layer": lambda: (TwoLayer(), (torch.randn(6, 4, 5),)),
        "cnn": lambda: (CNN(), (torch.randn(2, 3, 12, 12),)),
        "activations": lambda: (Activations(), (torch.randn(3, 6),)),
        "shapes": lambda: (Shapes(), (torch.randn(2, 4, 6), torch.tensor([0, 5, 2]))),
        "embed": lambda: (Embed(), (torch.randint(0, 20, (2, 5)),)),
        "recurrent": lambda: (Recurrent(), (torch.randn(4, 2, 5),)),
        "conv1d": lambda: (Conv1d(), (torch.randn(2, 4, 9), torch.randn(2, 3, 5, 6))),
        "transposed": lambda: (Transposed(), (torch.randn(2, 3, 4, 5),)),
        "reductions": lambda: (Reductions(), (torch.randn(2, 3, 4), torch.randn(2, 5, 4))),
        "resize": lambda: (Resize(), (torch.randn(1, 2, 4, 6), torch.tensor([[0, 5, 2], [1, 1, 4]]))),
    }[name]()
    randomize_batch_norms(model)
    return model.eval(), args


MODELS = ["two_layer", "cnn", "activations", "shapes", "embed", "recurrent", "conv1d", "transposed", "reductions", "resize"]
