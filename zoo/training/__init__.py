"""Training: the LightningModule, losses, data modules and YAML recipes."""

from zoo.training.data import ImageDataModule, ImageFolder
from zoo.training.module import ImageTokenizerModule
from zoo.training.recipe import build, load_recipe, train

__all__ = ["ImageDataModule", "ImageFolder", "ImageTokenizerModule", "build", "load_recipe", "train"]
