# After pytorch/tutorials beginner_source/blitz/neural_networks_tutorial.py (the 60-minute blitz: LeNet):
# define the network, run one 32x32 image through it, back-propagate a random gradient, compute an MSE
# loss, walk its graph backwards through grad_fn.next_functions, update the weights by hand
# (p.data.sub_) and then with optim.SGD. Added: the update steps repeated 30 times, so the loss has a
# figure to check. Only the import differs between clnet and PyTorch.
import clnet as torch
import clnet.nn as nn
import clnet.nn.functional as F


class Net(nn.Module):

    def __init__(self):
        super(Net, self).__init__()
        # 1 input channel, 6 output channels, 5x5 kernels
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        # affine layers y = Wx + b, 16 channels of 5x5 after the second pooling
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, input):
        c1 = F.relu(self.conv1(input))           # (N, 6, 28, 28)
        s2 = F.max_pool2d(c1, (2, 2))            # (N, 6, 14, 14)
        c3 = F.relu(self.conv2(s2))              # (N, 16, 10, 10)
        s4 = F.max_pool2d(c3, 2)                 # (N, 16, 5, 5)
        s4 = torch.flatten(s4, 1)                # (N, 400)
        f5 = F.relu(self.fc1(s4))                # (N, 120)
        f6 = F.relu(self.fc2(f5))                # (N, 84)
        output = self.fc3(f6)                    # (N, 10)
        return output


torch.manual_seed(0)
net = Net()
print(net)

params = list(net.parameters())
print(len(params))
print(params[0].size())  # conv1's weight

input = torch.randn(1, 1, 32, 32)
out = net(input)
print(out)

net.zero_grad()
out.backward(torch.randn(1, 10))

output = net(input)
target = torch.randn(10)  # a dummy target
target = target.view(1, -1)  # the same shape as the output
criterion = nn.MSELoss()

loss = criterion(output, target)
print(loss)

print(loss.grad_fn)  # MSELoss
print(loss.grad_fn.next_functions[0][0])  # Linear
print(loss.grad_fn.next_functions[0][0].next_functions[0][0])  # ReLU

net.zero_grad()
print('conv1.bias.grad before backward')
print(net.conv1.bias.grad)
loss.backward()
print('conv1.bias.grad after backward')
print(net.conv1.bias.grad)

learning_rate = 0.01
for f in net.parameters():
    f.data.sub_(f.grad.data * learning_rate)

import clnet.optim as optim

optimizer = optim.SGD(net.parameters(), lr=0.01)
for step in range(30):
    optimizer.zero_grad()
    output = net(input)
    loss = criterion(output, target)
    loss.backward()
    optimizer.step()
print('loss after 30 SGD steps:', loss.item())
