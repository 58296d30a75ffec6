import pytest

from medlens.errors import MedlensError
from medlens.training.config import TrainConfig


def test_defaults_are_valid_and_roundtrip():
    cfg = TrainConfig()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resolved_lr == 3e-3 and cfg.replace(optimizer="sgd").resolved_lr == 0.05


def test_unknown_key_says_did_you_mean():
    with pytest.raises(MedlensError, match="unknown config key 'epoch'.*'epochs'"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("fraction", 0.0, "--fraction must be in"),
        ("fraction", 1.5, "--fraction must be in"),
        ("image_size", 4, "--image-size must be between"),
        ("optimizer", "adam", "--optimizer must be one of"),
        ("head", "deep", "--head must be one of"),
        ("channels", 2, "--channels must be 1 or 3"),
    ],
)
def test_bad_values_are_rejected_with_the_option_name(field, value, message):
    with pytest.raises(MedlensError, match=message):
        TrainConfig(**{field: value})


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: logreg\nepochs: 3\nlr: 0.01\n")
    cfg = TrainConfig.load(path, epochs=5, lr=None)
    assert (cfg.model, cfg.epochs, cfg.lr) == ("logreg", 5, 0.01)
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(MedlensError, match="must be a mapping"):
        TrainConfig.load(tmp_path / "bad.yaml")
