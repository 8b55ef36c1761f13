"""Datasets by name, forget/retain/test splits, and fast in-memory batches.

Importing this package registers every dataset: the embedded `mnist5k` and `digits`,
the torchvision sets read from `data.root`, and `imagefolder`.
"""

# Imported for their registrations, in the order the datasets are listed.
from . import embedded  # noqa: F401  isort: skip
from . import torchvision_sets  # noqa: F401  isort: skip
from . import imagefolder  # noqa: F401  isort: skip
from .loaders import TensorLoader
from .registry import (Dataset, DatasetInfo, ImageSet, list_datasets, load_dataset,
                       register_dataset)
from .splits import Split, make_split, read_index_csv

__all__ = [
    "Dataset", "DatasetInfo", "ImageSet", "Split", "TensorLoader", "list_datasets",
    "load_dataset", "make_split", "read_index_csv", "register_dataset",
]
