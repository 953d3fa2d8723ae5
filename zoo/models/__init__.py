"""Model families. Importing this package registers every named variant."""

from zoo.models.base import ImageTokenizer, Tokenizer, TokenizerOutput
from zoo.models.titok import TiTok, TiTokConfig
from zoo.models.one_d_piece import OneDPiece, OneDPieceConfig
from zoo.models.seed import SEED, SEEDConfig  # noqa: E402  (SEED: causal semantic tokens)
from zoo.models.codec import AudioCodec, CodecConfig  # noqa: E402  (audio codecs: EnCodec, DAC)
from zoo.models.flextok import FlexTok, FlexTokConfig  # noqa: E402  (FlexTok: flexible-length 1D tokens)
from zoo.models.dm_codec import DMCodec, DMCodecConfig  # noqa: E402  (DM-Codec: distilled speech codec)

__all__ = ["ImageTokenizer", "Tokenizer", "TokenizerOutput", "TiTok", "TiTokConfig", "OneDPiece", "OneDPieceConfig"]
