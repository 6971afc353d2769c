"""torch.nn.modules.rnn: re-exported from clnet.nn.rnn."""
from ..rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell  # noqa: F401
