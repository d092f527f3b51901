"""Datasets: image folders, and wrappers that turn images into LIIF query samples."""
from .datasets import DATASETS, make, register
from . import image_folder
from . import wrappers
from . import cascaded
