"""Converters from official checkpoints of other codebases into the zoo's models.

A converter maps the state dict of one official source (``"official-titok"``, ...) onto a zoo
model of one family, key by key: a key it does not know, or a model key it cannot fill, raises
:class:`~zoo.errors.CheckpointError` naming it. Each family's converter lives in
``zoo/convert/<family>.py`` and registers itself on import::

    def convert_foo_state_dict(state, model):   # official tensors -> the model's full state dict
        ...
    from zoo.convert.base import register_converter   # not from zoo.convert: that imports you
    register_converter("official-foo", convert_foo_state_dict, family="foo")

plus one import line in this file. :func:`convert_checkpoint` (behind
``zoo convert --from SOURCE PATH --model NAME -o DIR``) reads a folder or a ``.safetensors`` /
``.bin`` file, converts it and loads it strictly; :func:`load_official` is what
``zoo.from_pretrained(name)`` runs on a downloaded official repo.
"""

from __future__ import annotations

from zoo.convert.base import (Converter, convert_checkpoint, convert_to_folder, converter_for, find_weights,
                              get_converter, list_converters, load_official, read_state_dict, register_converter,
                              source_note)

# One line per family: importing the module registers its converter.
from zoo.convert.titok import convert_titok_state_dict  # official-titok
from zoo.convert.one_d_piece import convert_one_d_piece_state_dict  # official-one-d-piece
from zoo.convert.seed import convert_seed_state_dict  # noqa: E402  official-seed
from zoo.convert.encodec import convert_encodec_state_dict  # official-encodec
from zoo.convert.dac import convert_dac_state_dict  # official-dac
from zoo.convert.dm_codec import convert_dm_codec_state_dict  # noqa: E402  official-dm-codec
from zoo.convert.flextok import convert_flextok_state_dict  # noqa: E402  official-flextok

__all__ = ["Converter", "register_converter", "list_converters", "get_converter", "converter_for",
           "find_weights", "read_state_dict", "convert_checkpoint", "convert_to_folder", "load_official", "source_note",
           "convert_titok_state_dict"]
