"""advhash: adversarial attacks and defenses for deep hashing retrieval.

The library behind the notebooks in ``notebooks/``, one concept per module:

- ground floors: ``data`` (query / database / train splits, multi-hot labels, optional text), ``models`` (backbones
  under a ``tanh(scale * z)`` hash head), ``losses`` (DPH, DPSH, HashNet), ``train``, ``checkpoint`` (atomic,
  ``weights_only=True``), ``metrics`` (Hamming ranking, mAP, t-MAP, PR, P@N), ``codes`` (closed-form codes)
- ``victim.Victim``: a model with its training and database codes, what attacks steer by; ``fitting``: a section's
  victims, trained or loaded, encoded once
- ``attacks`` (HAG, PGD, center, P2P, DHTA, SAAT, SDHA; ``ATTACKS``), ``defenses`` (CgAT, ATRDH, SAAT, the clean
  fine-tune; ``DEFENSES``), ``crossmodal`` (DCMH, SSAH and the CMLA attack)
- ``evaluation`` (the attack protocol), ``robustness`` (robust mAP of an attack ensemble), ``transfer`` (HAG's
  transfer table), ``tables`` (SAAT's Table I and II; the published tables in our layout)
- ``results`` (metrics JSON, headlines, curves, published tables), ``report`` and ``figures`` (the notebooks' frame
  and figures), ``pipeline`` (params.yaml -> papermill, notebook builds)
- ``uncertainty``: a paper's claim on per-query scores, its bootstrap interval (queries; seeds, then queries) and
  verdict (REPRODUCED, NOT REPRODUCED, INCONCLUSIVE)
- ``claims``: the papers' claims as data (``notebooks/published/claims.yaml``), read, checked and matched to a run
- ``findings``: a notebook's findings (``Findings``): each claim's verdict, its table and ``NN_findings.json``
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Victim":   # imported on first use: ``import advhash`` stays light for the pipeline's CLI
        from .victim import Victim
        return Victim
    raise AttributeError(f"module 'advhash' has no attribute {name!r}")
