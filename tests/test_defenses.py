"""The defense registry (advhash.defenses: ``DEFENSES``, ``build_defense``)."""

import pytest
from helpers import DEFENSE_BITS, DEFENSE_CLASSES
from helpers import small_defense as build

from advhash.defenses import ATRDH, DEFENSES, CgAT, build_defense

BITS, CLASSES = DEFENSE_BITS, DEFENSE_CLASSES


def test_registry_builds_defenses_by_name_with_the_published_defaults():
    assert {"cgat": CgAT, "atrdh": ATRDH}.items() <= DEFENSES.items()
    for name, cls in DEFENSES.items():
        if not getattr(cls, "adversarial", True):                                # the clean fine-tune control
            continue
        defense = build(name, 10)
        assert type(defense) is cls and defense.config["name"] == name
        assert (defense.eps, defense.alpha, defense.steps, defense.random_start, defense.model_mode) == \
            (8 / 255, 2 / 255, 7, True, "train")
        assert defense.code_table.shape == (10, BITS) and defense.label_table.shape == (10, CLASSES)
    assert build("cgat", 10, weight=2.0).weight == 2.0
    with pytest.raises(ValueError, match=r"unknown defense 'trades'; choose one of \[.*'atrdh', 'cgat'.*\]"):
        build_defense("trades", num_train=10, bits=BITS, num_classes=CLASSES)
