"""Representative codes that guide attacks and defenses: one binary code per item, in closed form.

- ``center_codes``  CgAT's center code (Wang et al., WWW 2023, Theorem 1)
- ``mainstay_codes``  SAAT's mainstay code (Yuan et al., TIFS 2023, DMFL, Theorem 1)
- ``representative.py``: what the two share: the weighted sum whose sign both are, ``label_jaccard``,
  ``label_cosine``
- ``anchor_codes``  the anchor code of P2P and DHTA (Bai et al., ECCV 2020): a target label's code
- ``all_codes`` / ``brute_force_minimum`` / ``closed_form_gap``: exhaustive search over {-1, +1}^K, the
  independent check of every closed form on small K
- ``advhash.codes.statistics``: bit balance and correlation, distances of representative codes to positives and
  negatives (imported from there: kept out of this package's import, so out of the trainers' code fingerprint)

Hamming distance throughout: d_H(b, b') = (K - b . b') / 2 for codes in {-1, +1}^K.
"""

from .anchor import anchor_codes, sample_target_labels
from .brute_force import all_codes, brute_force_minimum, closed_form_gap
from .center import CENTER_VARIANTS, center_code_objective, center_codes
from .mainstay import MAINSTAY_VARIANTS, mainstay_code_objective, mainstay_codes
from .representative import label_cosine, label_jaccard

__all__ = ["center_codes", "center_code_objective", "label_jaccard", "label_cosine", "CENTER_VARIANTS",
           "mainstay_codes", "mainstay_code_objective", "MAINSTAY_VARIANTS", "anchor_codes",
           "sample_target_labels", "all_codes", "brute_force_minimum", "closed_form_gap"]
