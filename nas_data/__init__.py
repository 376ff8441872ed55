"""Datasets, selected by one string everywhere (``--data``): the embedded digits, CIFAR-10 and
any ImageFolder tree, with deterministic splits and augmented batches (see ``_datasets.py``).

``python -m nas_data download cifar10[:ROOT]`` fetches CIFAR-10 (the only download the project makes,
and only when asked); ``python -m nas_data info SPEC`` prints a dataset's description.
"""

from ._datasets import IMG_EXTENSIONS, Data, load_data, parse_spec

__all__ = ["Data", "load_data", "parse_spec", "IMG_EXTENSIONS"]
