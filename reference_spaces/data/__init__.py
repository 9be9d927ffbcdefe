"""Search data (imported as ``flatarch.reference_spaces.data``).

* :mod:`.datasets` -- loading a dataset's training images into memory (CIFAR-10/100 through
  torchvision, ImageNet16-120 from its pickle batches, scikit-learn's digits offline) and the
  :class:`DataError` raised when a data directory is missing or corrupt.
* :mod:`.batches` -- the search's 50/50 split and seeded, resumable batch streams with
  on-device augmentation (random crop with padding, horizontal flip, normalisation).
"""

from .batches import BatchStream, split_half
from .datasets import DATASETS, DataError, ImageData, load_dataset

__all__ = ["DATASETS", "BatchStream", "DataError", "ImageData", "load_dataset", "split_half"]
