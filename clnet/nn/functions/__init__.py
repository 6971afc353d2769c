"""The implementations behind clnet.nn.functional, one module per topic (activation, conv, pooling,
sampling, normalization, loss, attention, embedding). Import them through clnet.nn.functional."""
