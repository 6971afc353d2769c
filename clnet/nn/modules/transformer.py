"""torch.nn.modules.transformer: re-exported from clnet.nn.transformer."""
from ..transformer import Transformer, TransformerEncoder, TransformerDecoder, TransformerEncoderLayer, TransformerDecoderLayer  # noqa: F401
