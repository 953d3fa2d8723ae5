"""The tokenizer zoo: discrete image and audio tokenizers, from pixels and waveforms to token ids and back.

>>> import zoo
>>> zoo.list_models("titok*")
>>> model = zoo.create("titok_nano_32")          # fresh weights
>>> model = zoo.from_pretrained("path/or/repo")  # saved weights (local dir, checkpoints/, Hub)
"""

__version__ = "0.1.0"

from zoo.errors import CheckpointError, ConfigError, InputError, UnknownModelError, ZooError  # noqa: E402
from zoo.registry import create, get_config, list_models  # noqa: E402


def from_pretrained(name_or_path: str, revision: str | None = None, **kwargs):
    """Load a tokenizer saved with ``save_pretrained``: a local directory, a folder under
    ``checkpoints/``, or a Hugging Face Hub repo id (cached download, ``revision`` pinning)."""
    from zoo.hub import from_pretrained as _from_pretrained
    return _from_pretrained(name_or_path, revision=revision, **kwargs)


__all__ = ["__version__", "create", "get_config", "list_models", "from_pretrained", "ZooError", "InputError",
           "UnknownModelError", "CheckpointError", "ConfigError"]
