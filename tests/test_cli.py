import subprocess
import sys

import sbcb
from sbcb.cli.main import main


def test_version_flag(capsys):
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.strip() == f"sbcb {sbcb.__version__}"


def test_info_lists_versions(capsys):
    import torch

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch{'':<1}" in out and torch.__version__ in out
    assert "cuda available" in out


def test_no_command_prints_help_and_fails():
    proc = subprocess.run([sys.executable, "-m", "sbcb"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: sbcb" in proc.stdout
