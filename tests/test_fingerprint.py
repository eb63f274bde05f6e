"""advhash.fingerprint: the code a checkpoint was trained by, hashed into its name so that a code fix retrains."""

import sys
import textwrap

import pytest

from advhash.fingerprint import code_fingerprint, code_modules, modules_of


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A user's own module (a custom defense, say) importing advhash's losses, importable as ``mydefense``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "mydefense.py"

    def write(source):
        path.write_text(textwrap.dedent(source))
        sys.modules.pop("mydefense", None)
        return path
    write('''
        """A custom defense."""
        from advhash.losses import build_loss

        def weight(x):
            """The inner weight."""
            return 2 * x   # doubled
    ''')
    return write


def test_the_training_loop_covers_what_it_imports_and_nothing_unrelated():
    covered = code_modules("advhash.train")
    assert {"advhash.train", "advhash.losses", "advhash.models.hashing_model", "advhash.models.backbones",
            "advhash.data.dataset", "advhash.utils", "advhash.metrics.relevance"} <= set(covered)
    assert not {"advhash.figures", "advhash.report", "advhash.pipeline", "advhash.attacks.hag"} & set(covered)
    defended = code_modules("advhash.defenses.base", "advhash.defenses.cgat")
    assert {"advhash.train", "advhash.codes.center", "advhash.attacks.pgd"} <= set(defended)


def test_comments_docstrings_and_layout_keep_the_fingerprint_and_any_statement_changes_it(user_package):
    before = code_fingerprint("mydefense")
    assert "advhash.losses" in code_modules("mydefense"), "a user's module is followed into advhash"
    user_package('''
        """A custom defense, reworded."""
        from advhash.losses import build_loss


        def weight(x):
            # a comment
            """Another docstring."""
            return 2 * (x)
    ''')
    assert code_fingerprint("mydefense") == before
    user_package('''
        """A custom defense."""
        from advhash.losses import build_loss

        def weight(x):
            return 3 * x
    ''')
    assert code_fingerprint("mydefense") != before


def test_modules_of_names_the_defining_modules_and_skips_notebook_code():
    from advhash.defenses import CgAT
    from advhash.losses import DPSHLoss

    assert modules_of(DPSHLoss, None, CgAT, lambda x: x) == ("advhash.losses", "advhash.defenses.cgat", __name__)
    local = type("Local", (), {"__module__": "__main__"})
    assert modules_of(local) == ()


def test_an_unknown_module_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no Python source for module 'not_a_module_anywhere'"):
        code_fingerprint("not_a_module_anywhere")
