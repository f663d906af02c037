"""The toy world's text-to-image model: a pixel-space diffusers UNet conditioned on a tiny CLIP text encoder.

Saved in the diffusers folder layout (``unet/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``), so it is loaded with the same ``from_pretrained`` calls as a real checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DConditionModel
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

from ..errors import DataError, reason, stage_hint
from ..world.spec import BACKGROUNDS, CLASSES
from .models import Generator

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
TEMPLATE_WORDS = ["a", "photo", "of", "in", "on", "the", "and"]
MAX_TOKENS = 16
# what ToyGenerator.save writes (and load needs)
SAVED_FILES = ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
               "text_encoder/model.safetensors", "tokenizer/tokenizer.json", "scheduler/scheduler_config.json")


def vocabulary() -> list[str]:
    return SPECIAL + TEMPLATE_WORDS + list(CLASSES) + list(BACKGROUNDS)


def build_tokenizer(words: list[str] | None = None, max_length: int = MAX_TOKENS) -> PreTrainedTokenizerFast:
    """An offline word-level tokenizer: [BOS] words [EOS], padded to ``max_length``."""
    words = words or vocabulary()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=max_length)


def build_text_encoder(vocab_size: int, hidden: int, layers: int, max_length: int = MAX_TOKENS) -> CLIPTextModel:
    """A tiny CLIP text encoder from a config; ``layers=0`` keeps only embeddings and the final norm.

    Without mixing layers the object word's own token is the only carrier of the object (why the
    toy generator has none: docs/decisions.md#toy-generator).
    """
    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=max_length,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3)
    return CLIPTextModel(cfg)


def build_unet(resolution: int, channels: list[int], cross_dim: int, heads: int,
               attention_levels: int | None = None) -> UNet2DConditionModel:
    """Self- and cross-attention at the ``attention_levels`` coarsest levels (default: all of them).

    With all three levels of a 32 px model that is 32x32, 16x16 and 8x8, as SD 1.5 has 64/32/16/8
    latent levels (why all of them: docs/decisions.md#toy-generator).
    """
    n = len(channels)
    k = n if attention_levels is None else attention_levels
    down = ["DownBlock2D"] * (n - k) + ["CrossAttnDownBlock2D"] * k
    up = ["CrossAttnUpBlock2D"] * k + ["UpBlock2D"] * (n - k)
    return UNet2DConditionModel(sample_size=resolution, in_channels=3, out_channels=3,
                                block_out_channels=tuple(channels), down_block_types=tuple(down),
                                up_block_types=tuple(up), layers_per_block=1, cross_attention_dim=cross_dim,
                                attention_head_dim=heads, norm_num_groups=8)


def build_train_scheduler(prediction: str = "v_prediction") -> DDPMScheduler:
    """Cosine noise schedule over 1000 timesteps; the model predicts ``prediction`` ("v_prediction":
    the image itself at high noise, or "epsilon"; why v: docs/decisions.md#toy-generator)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction)


@dataclass
class ToyGenerator(Generator):
    """The toy world's generator: pixel space (no VAE), saved in its own folder layout."""

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        self.text_encoder.save_pretrained(path / "text_encoder", safe_serialization=True)
        self.tokenizer.save_pretrained(path / "tokenizer")
        self.scheduler.save_pretrained(path / "scheduler")

    @classmethod
    def load(cls, path: str | Path) -> "ToyGenerator":
        """The generator :meth:`save` wrote to ``path``. No folder is a FileNotFoundError; an incomplete
        or damaged one (a file missing, cut short or not what it should be) a DataError naming it."""
        from safetensors import SafetensorError

        path = Path(path)
        if not (path / "unet" / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a generator folder (no unet/config.json); run the train_generator stage")
        hint = stage_hint(path) or "re-make it with the train_generator stage"
        missing = [f for f in SAVED_FILES if not (path / f).is_file()]
        if missing:
            raise DataError(path, f"incomplete generator folder (no {', '.join(missing)})", hint)

        def part(folder: str, loader):
            try:
                return loader.from_pretrained(path / folder, local_files_only=True)
            except (OSError, ValueError, SafetensorError) as err:  # what the loaders raise on a damaged file
                raise DataError(path / folder, f"damaged part of the generator ({reason(err)})", hint) from None

        return cls(unet=part("unet", UNet2DConditionModel).eval(), text_encoder=part("text_encoder", CLIPTextModel).eval(),
                   tokenizer=part("tokenizer", PreTrainedTokenizerFast), scheduler=part("scheduler", DDPMScheduler))
