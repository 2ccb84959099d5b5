import pytest

from sbcb.train.config import ConfigError, resolve_config, save_config

DEFAULTS = {"lr": 0.01, "iters": 40000, "crop": [512, 1024], "amp": None, "bbcb": False}


def test_precedence_default_yaml_cli(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 1e-3\niters: 100\ncrop: [64, 64]\n")  # YAML reads 1e-3 as a string: coerced to float
    out = resolve_config({"iters": 7, "lr": None, "command": "train"}, defaults=DEFAULTS, config_path=cfg)
    assert out == {"lr": 0.001, "iters": 7, "crop": [64, 64], "amp": None, "bbcb": False}


def test_unknown_key_is_an_error_with_suggestion(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("itres: 5\n")
    with pytest.raises(ConfigError, match="unknown key 'itres'.*'iters'"):
        resolve_config({}, defaults=DEFAULTS, config_path=cfg)


def test_dash_keys_and_bad_types(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("iters: 2.5\n")
    with pytest.raises(ConfigError, match="'iters'"):
        resolve_config({}, defaults=DEFAULTS, config_path=cfg)
    cfg.write_text("bbcb: yes please\n")
    with pytest.raises(ConfigError, match="'bbcb'"):
        resolve_config({}, defaults=DEFAULTS, config_path=cfg)


def test_saved_config_roundtrips_with_versions(tmp_path):
    import torch
    import yaml

    path = save_config({"lr": 0.01, "crop": (64, 32)}, tmp_path / "run" / "config.yaml")
    doc = yaml.safe_load(path.read_text())
    assert doc["lr"] == 0.01 and doc["crop"] == [64, 32]
    assert doc["versions"]["torch"] == torch.__version__
    # The saved file is itself a valid config for the same keys (minus versions).
    doc.pop("versions")
    cfg = tmp_path / "again.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    assert resolve_config({}, defaults={"lr": 1.0, "crop": [1, 1]}, config_path=cfg) == {"lr": 0.01, "crop": [64, 32]}
