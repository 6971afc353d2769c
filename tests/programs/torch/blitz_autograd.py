# After pytorch/tutorials beginner_source/blitz/autograd_tutorial.py (the 60-minute blitz, "Differentiation
# in Autograd" and "Exclusion from the DAG"): Q = 3a^3 - b^2 with an external gradient, checked against the
# hand-derived 9a^2 and -2b; requires_grad propagation; freezing every parameter of a model but a new
# classifier head (the tutorial's torchvision resnet18 replaced by a small convolutional model of our own).
# Only the import differs between clnet and PyTorch.
import clnet as torch
from clnet import nn, optim

a = torch.tensor([2., 3.], requires_grad=True)
b = torch.tensor([6., 4.], requires_grad=True)

Q = 3 * a ** 3 - b ** 2

external_grad = torch.tensor([1., 1.])
Q.backward(gradient=external_grad)

# the collected gradients are the hand-derived ones
print(9 * a ** 2 == a.grad)
print(-2 * b == b.grad)
grads_match = bool((9 * a ** 2 == a.grad).all()) and bool((-2 * b == b.grad).all())

x = torch.rand(5, 5)
y = torch.rand(5, 5)
z = torch.rand((5, 5), requires_grad=True)

a = x + y
print(f"Does `a` require gradients?: {a.requires_grad}")
b = x + z
print(f"Does `b` require gradients?: {b.requires_grad}")

# finetuning: freeze a pretrained-style model, replace its classifier and train only that
class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Linear(8 * 8 * 8, 1000)

    def forward(self, x):
        return self.fc(self.features(x))


torch.manual_seed(0)
model = SmallNet()
for param in model.parameters():
    param.requires_grad = False
model.fc = nn.Linear(8 * 8 * 8, 10)  # the new classifier is unfrozen

optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
data = torch.rand(4, 3, 16, 16)
labels = torch.tensor([1, 3, 5, 7])
conv = model.features[0]
frozen_before = conv.weight.detach().clone()
for step in range(20):
    loss = nn.functional.cross_entropy(model(data), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
frozen_kept = bool((conv.weight == frozen_before).all())
print('frozen weights unchanged:', frozen_kept, 'classifier gradient:', model.fc.weight.grad is not None,
      'conv gradient:', conv.weight.grad)
print('final loss', loss.item())
