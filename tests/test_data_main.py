"""The data command line (``python -m advhash.data``, advhash/data/__main__.py)."""

from helpers import needs_fashion

from advhash.data.__main__ import main as cli


@needs_fashion
def test_command_line_materializes(fashion_root, capsys):
    assert cli(["materialize", "fashion-mnist", "--root", str(fashion_root)]) == 0
    assert "fashion-mnist: 70000 items" in capsys.readouterr().out
