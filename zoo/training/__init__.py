"""Training: the LightningModules, losses, data modules, tasks and YAML recipes.

Each family whose training is not plain image reconstruction registers a task in
:mod:`zoo.training.tasks` (import its module here so the registration runs).
"""

from zoo.training.data import ImageDataModule, ImageFolder
from zoo.training.module import ImageTokenizerModule
from zoo.training.tasks import get_task, list_tasks, register_task

register_task("image", ImageTokenizerModule, ImageDataModule,
              data_defaults=lambda module: {"image_size": module.model.input_size},
              description="image reconstruction: L1/L2/LPIPS/GAN + quantizer losses")

from zoo.training.seed import CaptionedImageDataModule, SEEDModule  # noqa: E402

register_task("seed", SEEDModule, CaptionedImageDataModule,
              data_defaults=lambda module: {"image_size": module.model.input_size,
                                            "require_captions": module.stage == 1},
              description="SEED stages: 1 contrastive (causal Q-Former), 2 VQ + embedding reconstruction, 3 pixels")

from zoo.training.audio_data import AudioDataModule  # noqa: E402
from zoo.training.audio_module import AudioCodecModule  # noqa: E402

register_task("audio_codec", AudioCodecModule, AudioDataModule,
              data_defaults=lambda module: {"sample_rate": module.model.sample_rate, "channels": module.model.channels},
              description="audio codecs: multi-scale mel + L1 + MPD/STFT discriminators with feature matching + quantizer")

from zoo.training.dm_codec import DistillAudioDataModule, DMCodecModule  # noqa: E402

register_task("dm_codec", DMCodecModule, DistillAudioDataModule,
              data_defaults=lambda module: {"sample_rate": module.model.sample_rate,
                                            "hop_length": module.model.hop_length},
              description="DM-Codec: audio codec losses + LM/SM feature distillation from frozen teachers")

from zoo.training.generator import ARGeneratorModule, TokenDataModule, data_defaults as _generator_data  # noqa: E402

register_task("ar_generator", ARGeneratorModule, TokenDataModule, data_defaults=_generator_data,
              description="class-conditional AR generator (GPT) on token shards from zoo tokenize-dataset")

from zoo.training.flow import FlowTokenizerModule  # noqa: E402

register_task("flow", FlowTokenizerModule, ImageDataModule,
              data_defaults=lambda module: {"image_size": module.model.input_size},
              description="flow-decoder tokenizers (FlexTok): rectified-flow loss + nested dropout (+ REPA)")

from zoo.training.recipe import build, load_recipe, train  # noqa: E402

__all__ = ["ImageDataModule", "ImageFolder", "ImageTokenizerModule", "build", "load_recipe", "train",
           "register_task", "get_task", "list_tasks"]
