"""advhash: adversarial attacks and defenses for deep hashing retrieval.

The library behind the notebooks in ``notebooks/``. One concept per module:

- ``advhash.data``      datasets with query / database / train splits, multi-hot labels, optional text
- ``advhash.models``    torchvision backbones and a small CNN under a ``tanh(alpha * z)`` hash head
- ``advhash.losses``    DPH, DPSH and HashNet pairwise hashing losses
- ``advhash.train``     the seeded, resumable training loop and code extraction
- ``advhash.metrics``   Hamming ranking, mAP (full, @k, tie-aware, targeted), PR and P@N curves
- ``advhash.attacks``   torchattacks-style attacks (HAG, a Hamming PGD baseline) and their registry
- ``advhash.checkpoint`` atomic checkpoints loaded with ``weights_only=True``
"""

__version__ = "0.1.0"
