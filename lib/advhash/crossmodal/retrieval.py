"""Cross-modal retrieval: codes of both modalities and the four Hamming-ranking tasks.

Image-to-text (image queries against the text codes of the database), text-to-image, and the two
intra-modal tasks (image-to-image, text-to-text), each scored by ``advhash.metrics.mean_average_precision``
(relevance: sharing a label; ties by database order) so that numbers compare with the single-modal
notebooks. DCMH, SSAH and CMLA report image-to-text and text-to-image mAP.
"""

from __future__ import annotations

import torch

from ..metrics import mean_average_precision
from ..train import encode
from .fitting import require_texts

TASKS = {"image->text": ("image", "text"), "text->image": ("text", "image"),
         "image->image": ("image", "image"), "text->text": ("text", "text")}


def encode_pairs(model, split) -> dict[str, torch.Tensor]:
    """{"image": codes of the split's images (read a batch at a time), "text": codes of its texts}, each (n, K)."""
    return {"image": encode(model.image, split), "text": encode(model.text, require_texts(split).float())}


def crossmodal_maps(query_codes: dict[str, torch.Tensor], db_codes: dict[str, torch.Tensor], query_labels,
                    db_labels, *, topk: int | None = None, tasks=tuple(TASKS)) -> dict[str, float]:
    """mAP@topk of each task in ``tasks`` ("image->text", ...): queries of the first modality ranked against the
    database codes of the second. ``query_codes`` / ``db_codes``: {"image": (n, K), "text": (n, K)}."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {list(TASKS)}")
    return {task: mean_average_precision(query_codes[TASKS[task][0]], db_codes[TASKS[task][1]], query_labels,
                                         db_labels, topk=topk) for task in tasks}
