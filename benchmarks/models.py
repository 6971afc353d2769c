"""Models the step benchmarks train, written once against the PyTorch API so that the very same code builds
the clnet model (pass clnet.nn) and the PyTorch one (pass torch.nn): only the import differs.

    resnet18_cifar(nn, F)   ResNet-18 for 32x32 images (3x3 stem, no max-pool; BasicBlocks 2-2-2-2 of
                            64-128-256-512 channels; 1x1 convolution + BatchNorm shortcuts where the shape
                            changes; 4x4 average pool; linear to 10 classes), the CIFAR variant of
                            He et al. (2016) as the common CIFAR-10 training scripts write it
"""
from __future__ import annotations


def resnet18_cifar(nn, F, num_classes=10):
    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out = out + self.shortcut(x)
            return F.relu(out)

    class ResNet(nn.Module):
        def __init__(self, num_blocks=(2, 2, 2, 2)):
            super().__init__()
            self.in_planes = 64
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.layer1 = self._make_layer(64, num_blocks[0], 1)
            self.layer2 = self._make_layer(128, num_blocks[1], 2)
            self.layer3 = self._make_layer(256, num_blocks[2], 2)
            self.layer4 = self._make_layer(512, num_blocks[3], 2)
            self.linear = nn.Linear(512, num_classes)

        def _make_layer(self, planes, n, stride):
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(BasicBlock(self.in_planes, planes, s))
                self.in_planes = planes
            return nn.Sequential(*layers)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
            out = F.avg_pool2d(out, 4)
            out = out.reshape(out.shape[0], -1)
            return self.linear(out)

    return ResNet()


def lstm_lm(nn, ntoken=10000, ninp=256, nhid=256, nlayers=2, dropout=0.0):
    """Word-level LSTM language model as in PyTorch's examples/word_language_model (RNNModel with LSTM):
    Embedding -> dropout -> LSTM (nlayers, nhid) -> dropout -> Linear to the vocabulary (PTB's 10000 words).
    Dropout is 0 here (the example's default is 0.2) so both frameworks do the same arithmetic and their
    losses can be compared."""
    class RNNModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)
            self.nlayers, self.nhid = nlayers, nhid

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output)
            decoded = decoded.view(-1, ntoken)
            return decoded, hidden

    return RNNModel()


def gpt(nn, F, vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0):
    """nanoGPT's model (Karpathy's model.py) at its Shakespeare-character size: token + position embeddings,
    n_layer pre-LayerNorm blocks of causal self-attention (n_head heads, F.scaled_dot_product_attention)
    and a 4x GELU MLP, a final LayerNorm and a vocabulary head tied to the token embedding."""
    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.resid_dropout = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
            q = q.view(B, T, n_head, C // n_head).transpose(1, 2)
            v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=dropout if self.training else 0,
                                               is_causal=True)
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.resid_dropout(self.c_proj(y))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * n_embd, n_embd)
            self.dropout = nn.Dropout(dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(n_embd)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            x = x + self.mlp(self.ln_2(x))
            return x

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
                drop=nn.Dropout(dropout), h=nn.ModuleList([Block() for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd)))
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight   # weight tying

        def forward(self, idx, pos, targets):
            tok_emb = self.transformer.wte(idx)
            pos_emb = self.transformer.wpe(pos)
            x = self.transformer.drop(tok_emb + pos_emb)
            for block in self.transformer.h:
                x = block(x)
            x = self.transformer.ln_f(x)
            logits = self.lm_head(x)
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    return GPT()
