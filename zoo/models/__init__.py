"""Model families. Importing this package registers every named variant."""

from zoo.models.base import ImageTokenizer, Tokenizer, TokenizerOutput
from zoo.models.titok import TiTok, TiTokConfig

__all__ = ["ImageTokenizer", "Tokenizer", "TokenizerOutput", "TiTok", "TiTokConfig"]
