"""The lecture's "Static PyTorch: ONNX Support" slide on clnet: only `import torch` changed.

Runs the model once on a dummy input, prints the graph (verbose=True) and writes it to 'model.proto' in the
current folder, an ONNX file any ONNX runtime runs (onnxruntime, TensorRT, ... or clnet.onnx.load):

    python examples/onnx_export.py        # needs the onnx package: pip install 'clnet[onnx]'
"""
import clnet as torch

N, D_in, H, D_out = 64, 1000, 100, 10
model = torch.nn.Sequential(
    torch.nn.Linear(D_in, H),
    torch.nn.ReLU(),
    torch.nn.Linear(H, D_out))

dummy_input = torch.randn(N, D_in)
torch.onnx.export(model, dummy_input,
                  'model.proto',
                  verbose=True)
