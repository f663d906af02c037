import pytest
import torch

from freemask.data import shards
from freemask.diffusion import train_toy
from freemask.diffusion.toy import ToyGenerator
from freemask.world.build import generator_sample


@pytest.fixture
def generator_set(tmp_path, tiny_world):
    d = tmp_path / "gen_train"
    shards.write_shard(d / shards.shard_name(0), ((f"{i:04d}", generator_sample(tiny_world, i)) for i in range(24)))
    return d


def _weights(path):
    g = ToyGenerator.load(path)
    return {k: v.clone() for k, v in g.unet.state_dict().items()}


def test_training_saves_a_loadable_generator_in_diffusers_layout(tmp_path, generator_set, tiny_generator_cfg):
    stats = train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "out", tmp_path / "work")
    assert stats["steps"] == 4 and len(stats["loss_per_100_steps"]) == 1
    for sub in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "tokenizer/tokenizer.json",
                "scheduler/scheduler_config.json"):
        assert (tmp_path / "out" / sub).exists(), sub
    g = ToyGenerator.load(tmp_path / "out")
    assert g.encode(["a photo of a boat on the water"]).shape == (1, 16, 16)


def test_resume_after_interruption_gives_the_uninterrupted_weights(tmp_path, generator_set, tiny_generator_cfg, monkeypatch):
    train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "full", tmp_path / "w1")

    calls = {"n": 0}
    real_step = torch.optim.AdamW.step

    def dying_step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # killed during step 3, after the checkpoint of step 2
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "resumed", tmp_path / "w2")
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert (tmp_path / "w2" / "state.pt").exists() and not (tmp_path / "resumed").exists()
    train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "resumed", tmp_path / "w2")
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_generator_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_generator"):
        ToyGenerator.load(tmp_path / "nothing")


def test_without_text_layers_a_word_embedding_ignores_the_other_words(tiny_generator):
    """The property the attention masks rest on: only the object word's own token carries the object."""
    gen = tiny_generator
    a = gen.encode(["a photo of a car on the road"])
    b = gen.encode(["a photo of a car in the sky"])
    c = gen.encode(["a photo of a boat on the road"])
    car = 5  # [BOS] a photo of a car
    assert torch.equal(a[0, car], b[0, car])
    assert not torch.equal(a[0, car], c[0, car])
    assert torch.equal(a[0, car + 1:car + 3], c[0, car + 1:car + 3])  # "on the" does not see the object


def test_raising_steps_continues_from_the_finished_run(tmp_path, generator_set, tiny_generator_cfg, capsys):
    """A longer run resumes from the shorter one's final checkpoint and equals an uninterrupted run."""
    train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "full", tmp_path / "w1")
    short = tiny_generator_cfg.model_copy(update={"steps": 2})
    train_toy.train_generator(short, generator_set, tmp_path / "short", tmp_path / "w2")
    stats = train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "long", tmp_path / "w2")
    assert "resuming at step 2" in capsys.readouterr().out
    assert stats["steps"] == 4
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "long")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_from_other_params_is_not_resumed(tmp_path, generator_set, tiny_generator_cfg, capsys):
    train_toy.train_generator(tiny_generator_cfg, generator_set, tmp_path / "a", tmp_path / "w")
    other = tiny_generator_cfg.model_copy(update={"lr": 0.01})
    train_toy.train_generator(other, generator_set, tmp_path / "b", tmp_path / "w")
    assert "starting afresh" in capsys.readouterr().out


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_the_saved_scheduler_names_what_the_unet_predicts(tmp_path, generator_set, tiny_generator_cfg, prediction):
    cfg = tiny_generator_cfg.model_copy(update={"prediction": prediction, "steps": 1})
    train_toy.train_generator(cfg, generator_set, tmp_path / "out", tmp_path / "work")
    assert ToyGenerator.load(tmp_path / "out").scheduler.config.prediction_type == prediction
