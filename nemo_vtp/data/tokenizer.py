"""The tiny model's tokenizer: byte-level BPE trained on the synthetic world, with Qwen2.5-VL's
special tokens and chat template, saved as an HF folder.

The folder (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`,
`preprocessor_config.json`) loads with `transformers.AutoTokenizer` / `PreTrainedTokenizerFast`, and
together with `Qwen2VLImageProcessor` makes an HF `Qwen2_5_VLProcessor`. It is built
deterministically (same corpus, same merges, same bytes) and cached under the package's
`assets/tokenizer/`; `default_tokenizer_dir()` returns it, building it on first use (about a second).
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from nemo_vtp.data.schema import RESPONSE_TAGS

# Qwen2.5-VL's special tokens, in Qwen's id order.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Tokens Qwen adds as non-special (kept by `decode(skip_special_tokens=True)`); the response tags join them.
QWEN_PLAIN_TOKENS = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                     "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
# Qwen2's pre-tokenizer split: words with one leading non-letter, single digits, punctuation runs, spaces.
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
DEFAULT_VOCAB_SIZE = 1024  # all tokens, specials and tags included
CORPUS_SEED = 20240901  # the synthetic world the merges are learned on (fixed: changing it changes the vocab)
CORPUS_SAMPLES = 4500
EOS_TOKEN = "<|im_end|>"  # Qwen2.5-VL-Instruct ends a turn with <|im_end|>
PAD_TOKEN = "<|endoftext|>"

# The image processor settings saved next to the tokenizer (HF's Qwen2-VL defaults).
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def chat_template() -> str:
    """Qwen2.5-VL's chat template (Jinja), as shipped in `assets/chat_template.jinja`."""
    return resources.files("nemo_vtp.data").joinpath("assets/chat_template.jinja").read_text(encoding="utf-8")


def synthetic_corpus(num: int = CORPUS_SAMPLES, seed: int = CORPUS_SEED) -> list[str]:
    """The texts the merges are learned on: questions and response parts of a synthetic world,
    plus the chat-template words. Tags and special tokens are left out (they are added whole)."""
    from nemo_vtp.data.synth.world import WorldSpec, iter_samples

    texts = []
    for sample, _ in iter_samples(WorldSpec(num=num, seed=seed)):
        # The text between the special tokens of one templated conversation, in order.
        texts += [f"system\n{DEFAULT_SYSTEM_PROMPT}", "\n", "user\n", sample.question, "\n", "assistant\n",
                  sample.response.description, sample.response.think, sample.answer, "\n"]
    return texts


def train_tokenizer(corpus: list[str], vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """Byte-level BPE with Qwen2's pre-tokenizer; specials first, then merges, then the plain tokens."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    plain = (*QWEN_PLAIN_TOKENS, *RESPONSE_TAGS)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(plain),
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    return tok


def save_hf_folder(tok: Tokenizer, out_dir: str | Path, min_pixels: int = DEFAULT_MIN_PIXELS,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Write the HF tokenizer + image-processor files of `tok` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    added = {str(i): {"content": t.content, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": t.special}
             for i, t in sorted(tok.get_added_tokens_decoder().items())}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": None,
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_start_token": "<|vision_start|>",
        "vision_end_token": "<|vision_end|>",
        "processor_class": "Qwen2_5_VLProcessor",
    }
    _write_json(out / "tokenizer_config.json", config)
    (out / "chat_template.jinja").write_text(chat_template(), encoding="utf-8")
    _write_json(out / "preprocessor_config.json", {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True, "resample": 3,  # PIL bicubic
        "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD),
        "min_pixels": min_pixels, "max_pixels": max_pixels,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    })
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_tokenizer(out_dir: str | Path, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Train on the synthetic corpus and write the HF folder; deterministic."""
    return save_hf_folder(train_tokenizer(synthetic_corpus(), vocab_size), out_dir)


def default_tokenizer_dir() -> Path:
    """The tiny model's tokenizer folder, built once into the package's assets (atomic rename)."""
    target = Path(str(resources.files("nemo_vtp.data").joinpath("assets/tokenizer")))
    if (target / "tokenizer.json").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=target.parent))
    build_tokenizer(tmp)
    tmp.chmod(0o755)  # mkdtemp makes it private
    try:
        os.replace(tmp, target)  # another process may have won the race: theirs is identical
    except OSError:
        pass
    return target


def load_tokenizer(path: str | Path | None = None):
    """An HF fast tokenizer from `path` (an HF folder, or a Hugging Face id in the local cache), or the tiny
    default when None."""
    from transformers import AutoTokenizer

    from nemo_vtp.models.hub import resolve_model_dir

    folder = resolve_model_dir(path, "model.tokenizer") if path else default_tokenizer_dir()
    return AutoTokenizer.from_pretrained(str(folder))


def special_token_ids(tokenizer) -> dict[str, int]:
    """The token ids a Qwen2.5-VL config needs, read from an HF tokenizer.

    Returns vocab_size (all tokens, added ones included), image_token_id, video_token_id,
    vision_start_token_id, vision_end_token_id, eos_token_id (<|im_end|>), pad_token_id (<|endoftext|>).
    """
    ids = {
        "image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
        "eos_token_id": EOS_TOKEN, "pad_token_id": PAD_TOKEN,
    }
    out = {"vocab_size": len(tokenizer)}
    for key, token in ids.items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token} token (needed for {key})")
        out[key] = int(token_id)
    return out
