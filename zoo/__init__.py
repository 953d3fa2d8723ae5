"""The tokenizer zoo: discrete image and audio tokenizers, from pixels and waveforms to token ids and back.

>>> import zoo
>>> zoo.list_models("titok*")
>>> model = zoo.create("titok_nano_32")          # fresh weights
>>> model = zoo.from_pretrained("path/or/repo")  # saved weights (local dir, checkpoints/, Hub)

Layers (imports only point down; tests/test_layers.py checks it): errors/io/version/config/validation
-> hub (file I/O) -> quantize/blocks -> registry -> models (register themselves) -> convert -> factory
-> training/evaluate -> cli. Nothing inside ``zoo`` imports this package's ``__init__`` or ``zoo.cli``.
"""

from zoo.version import __version__
from zoo.errors import CheckpointError, ConfigError, InputError, UnknownModelError, ZooError
from zoo.factory import create, from_pretrained, get_config, list_models, load_model

__all__ = ["__version__", "create", "get_config", "list_models", "from_pretrained", "load_model", "ZooError",
           "InputError", "UnknownModelError", "CheckpointError", "ConfigError"]
