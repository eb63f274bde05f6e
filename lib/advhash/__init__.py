"""advhash: adversarial attacks and defenses for deep hashing retrieval.

The library behind the notebooks in ``notebooks/``. One concept per module:

- ``advhash.data``      datasets with query / database / train splits, multi-hot labels, optional text
- ``advhash.models``    torchvision backbones and a small CNN under a ``tanh(scale * z)`` hash head
- ``advhash.losses``    DPH, DPSH and HashNet pairwise hashing losses
- ``advhash.train``     the seeded, resumable training loop and code extraction
- ``advhash.metrics``   Hamming ranking, mAP (full, @k, tie-aware, targeted), PR and P@N curves
- ``advhash.codes``     closed-form representative codes: center, mainstay and anchor codes
- ``advhash.victim``    ``Victim``: a model with its training and database codes, what attacks steer by
- ``advhash.attacks``   torchattacks-style attacks (HAG, PGD, center, P2P, DHTA, SAAT, SDHA) and ``ATTACKS``
- ``advhash.defenses``  adversarial training (CgAT, ATRDH, SAAT, the clean fine-tune) and ``DEFENSES``
- ``advhash.crossmodal`` image-text hashing (DCMH, SSAH) and the CMLA attack
- ``advhash.fitting``   ``fit_victims``: the victims of a section, trained or loaded, encoded once
- ``advhash.evaluation`` query sets, retrieval scores of clean and adversarial queries, code statistics
- ``advhash.transfer``  HAG's transfer table: perturbations crafted on one victim, scored on every other
- ``advhash.report``    the notebooks' frame (folders, timer, saving); ``advhash.figures`` their figures
- ``advhash.pipeline``  params.yaml -> papermill glue, notebook builds, metrics files
- ``advhash.checkpoint`` atomic checkpoints loaded with ``weights_only=True``
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Victim":   # imported on first use: ``import advhash`` stays light for the pipeline's CLI
        from .victim import Victim
        return Victim
    raise AttributeError(f"module 'advhash' has no attribute {name!r}")
