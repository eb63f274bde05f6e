"""Retrieval datasets with query / database / train splits, multi-hot labels and optional tag texts.

- ``dataset.py``       :class:`HashingSplit` (``split[i] -> (image, label, index)``), :class:`HashingData`
- ``splits.py``        seeded split selection from a stored pool, ``STANDARD_SPLITS``
- ``storage.py``       the on-disk format ``<root>/<name>/{images,labels,texts}.npy + meta.json``
- ``fashion.py``       Fashion-MNIST (real)          ``mosaic.py``  Fashion-Mosaic (derived, multi-label + tags)
- ``cifar.py``         CIFAR-10                      ``listfile.py`` FLICKR-25K / NUS-WIDE / MS-COCO list files
- ``crossmodal_mat.py`` DCMH-style ``.mat`` files     ``registry.py`` ``DATASETS``, ``load_dataset``, ``materialize``

Command line: ``python -m advhash.data materialize fashion-mnist fashion-mosaic --root data``.
"""

from .cifar import load_cifar10
from .crossmodal_mat import MIRFLICKR24_CLASSES, load_crossmodal_mat, read_crossmodal_mat
from .dataset import HashingData, HashingSplit, ImageFileSplit, InMemorySplit, check_binary_labels
from .fashion import load_fashion_mnist
from .listfile import load_listfile_dataset
from .mosaic import TAG_VOCABULARY, build_fashion_mosaic, load_fashion_mosaic
from .registry import DATASETS, MATERIALIZABLE, load_dataset, materialize
from .splits import STANDARD_SPLITS, choose_splits, data_from_pool
from .storage import load_arrays, save_arrays

__all__ = [
    "DATASETS", "MATERIALIZABLE", "MIRFLICKR24_CLASSES", "STANDARD_SPLITS", "TAG_VOCABULARY", "HashingData",
    "HashingSplit", "ImageFileSplit", "InMemorySplit", "build_fashion_mosaic", "check_binary_labels",
    "choose_splits", "data_from_pool", "load_arrays", "load_cifar10", "load_crossmodal_mat", "load_dataset",
    "load_fashion_mnist", "load_fashion_mosaic", "load_listfile_dataset", "materialize", "read_crossmodal_mat",
    "save_arrays",
]
