"""The clean fine-tune: the control of every adversarial-training comparison.

A defended model is a clean model fine-tuned for more epochs with an adversarial objective. Part of
its gain may come from the extra training alone, so every comparison also fine-tunes the same clean
model for the same epochs, with the same optimizer, on the hashing loss alone. Registered in
``DEFENSES`` as "finetune" so a notebook picks it by name like the real defenses; it has no inner
attack (the budget settings a notebook passes to every defense are accepted and ignored).
"""

from __future__ import annotations


class FineTune:
    """The clean fine-tune control: ``fit_defended_model(data, model, FineTune(), ...)`` trains with the
    hashing loss alone (the same run as ``defense=None``: same weights, same checkpoint).

    Arguments: any of the defenses' keyword arguments (num_train, bits, eps, ...), ignored.
    """

    name = "finetune"
    adversarial = False

    def __init__(self, **ignored):
        self.ignored = sorted(ignored)

    def __repr__(self) -> str:
        return "FineTune()"
