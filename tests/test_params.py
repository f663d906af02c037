from pathlib import Path

import pytest
import yaml

from freemask.params import ParamsError, dump_defaults, load, validate

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_file_validates_and_matches_defaults():
    p = load(ROOT / "params.yaml")
    assert p.model_dump() == dump_defaults(), "params.yaml drifted from the defaults in params.py"


def test_negative_value_names_the_dotted_key():
    data = dump_defaults()
    data["generate"]["steps"] = -3
    with pytest.raises(ParamsError, match=r"generate\.steps: Input should be greater than 0"):
        validate(data)


def test_misspelled_key_is_rejected_by_name():
    data = dump_defaults()
    data["train"]["stepz"] = 10
    with pytest.raises(ParamsError, match=r"train\.stepz: unknown key"):
        validate(data)


def test_unknown_section_and_wrong_type():
    data = dump_defaults()
    data["evalute"] = {}
    data["world"]["resolution"] = "32"
    with pytest.raises(ParamsError) as err:
        validate(data)
    assert "evalute: unknown key" in str(err.value)
    assert "world.resolution" in str(err.value)


def test_nested_threshold_rule_is_checked():
    data = dump_defaults()
    data["generate"]["threshold"]["rule"] = "median"
    with pytest.raises(ParamsError, match=r"generate\.threshold\.rule"):
        validate(data)


def test_load_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load(bad)


def test_stage_exits_with_message_not_traceback(tmp_path, monkeypatch, capsys):
    from freemask.runtime import run_stage

    data = dump_defaults()
    data["generate"]["steps"] = -3
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FREEMASK_PARAMS", str(f))
    ran = []
    with pytest.raises(SystemExit) as exit_:
        run_stage(ran.append)
    assert exit_.value.code == 2 and not ran
    assert "generate.steps" in capsys.readouterr().err


def test_stage_with_a_bad_launcher_environment_exits_with_message(tmp_path, monkeypatch, capsys):
    from freemask.distributed import ranks_from_env
    from freemask.runtime import run_stage

    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(dump_defaults()))
    monkeypatch.setenv("FREEMASK_PARAMS", str(f))
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exit_:
        run_stage(lambda p: ranks_from_env())
    assert exit_.value.code == 2
    assert "RANK=3 is outside [0, WORLD_SIZE=2)" in capsys.readouterr().err


def test_generator_attention_levels_cannot_exceed_unet_levels():
    data = dump_defaults()
    data["train_generator"]["attention_levels"] = 4
    with pytest.raises(ParamsError, match=r"train_generator.*attention_levels: 4 levels asked, the UNet has 3"):
        validate(data)


def test_diffumask_per_class_params_reject_unknown_and_missing_classes_by_key():
    data = dump_defaults()
    data["generate"]["diffumask"]["thresholds"]["cat"] = 0.4
    with pytest.raises(ParamsError, match=r"generate\.diffumask\.thresholds: .*unknown class 'cat'"):
        validate(data)
    data = dump_defaults()
    del data["generate"]["diffumask"]["resolutions"]["boat"]
    with pytest.raises(ParamsError, match=r"generate\.diffumask\.resolutions: .*no resolution list for class 'boat'"):
        validate(data)
    data = dump_defaults()
    data["generate"]["diffumask"]["thresholds"]["car"] = 1.5
    data["generate"]["diffumask"]["resolutions"]["car"] = []
    with pytest.raises(ParamsError) as err:
        validate(data)
    assert "generate.diffumask.thresholds.car: Input should be less than 1" in str(err.value)
    assert "generate.diffumask.resolutions.car" in str(err.value)


def test_diffumask_override_of_one_class_keeps_the_others():
    data = dump_defaults()
    data["generate"]["diffumask"]["thresholds"]["car"] = 0.35
    p = validate(data)
    assert p.generate.diffumask.thresholds["car"] == 0.35 and p.generate.diffumask.thresholds["boat"] == 0.5


def test_dataset_diffusion_band_must_be_ordered():
    data = dump_defaults()
    data["generate"]["dataset_diffusion"]["low"] = 0.7
    with pytest.raises(ParamsError, match=r"generate\.dataset_diffusion: .*low \(0\.7\) must be below high \(0\.6\)"):
        validate(data)


def test_mask_quality_cannot_ask_for_more_samples_than_the_generate_stage_makes():
    data = dump_defaults()
    data["assess"]["mask_quality_per_class"] = 61
    with pytest.raises(ParamsError, match=r"assess\.mask_quality_per_class: 61 samples .* makes 60 \(generate\.per_class\)"):
        validate(data)


def test_params_rewritten_by_dvc_exp_run_set_still_validate(tmp_path):
    """`dvc exp run -S` rewrites params.yaml through DVC's YAML 1.2 dumper, which writes the
    preposition 'on' unquoted; read as YAML 1.1 that is True and the toy profile fails validation."""
    import shutil

    from dvc.utils.serialize import modify_yaml

    from freemask.params import load

    path = tmp_path / "params.yaml"
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", path)
    with modify_yaml(path) as data:
        data["seed"] = 1
    assert "grass: on" in path.read_text()  # the form that broke the experiments
    p = load(path)
    assert p.seed == 1 and p.profile.backgrounds["grass"] == "on"
