"""Small shared helpers (advhash.utils): the one "must be one of" check."""

import pytest

from advhash.utils import check_choice


def test_check_choice_returns_an_allowed_value_and_names_the_argument_its_choices_and_the_value_otherwise():
    assert check_choice("variant", "published", ("paper", "published")) == "published"
    assert check_choice("pairs", "batch", ["table", "batch"]) == "batch"          # any iterable of choices
    assert check_choice("loss", "dph", {"dph": 1, "dpsh": 2}) == "dph"             # a registry's keys
    with pytest.raises(ValueError, match=r"^variant must be one of \('paper', 'published'\); got 'official'$"):
        check_choice("variant", "official", ("paper", "published"))
    with pytest.raises(ValueError, match=r"^rule must be one of \('a', 'b'\); got 3 \(a = TADH's rule\)$"):
        check_choice("rule", 3, ("a", "b"), hint=" (a = TADH's rule)")
    with pytest.raises(ValueError, match=r"got \['paper'\]"):
        check_choice("variant", ["paper"], ("paper", "published"))                # unhashable: still a clear error
