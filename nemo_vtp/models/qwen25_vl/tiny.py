"""A tiny random Qwen2.5-VL: config, word-level tokenizer, image processor, HF folder (`nemo-vtp model tiny`).

Everything is built in memory from a few hundred words; nothing is downloaded. The folder written by
`write_tiny_folder` loads with `from_pretrained` / `AutoProcessor.from_pretrained` exactly like a
real checkpoint and converts with `nemo-vtp convert hf-to-megatron`, so conversion, engines and the
server can be tried (and are tested) through their real loading paths.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen2-VL chat template, images as <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 16  # at most 16 merged image tokens per image


def make_tokenizer(num_words: int = 200, seed: int = 0):
    """A WordLevel tokenizer over random lowercase words plus the Qwen special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(seed)
    words = {
        "what",
        "is",
        "in",
        "the",
        "image",
        "describe",
        "this",
        "system",
        "user",
        "assistant",
        "you",
        "are",
        "a",
        "helpful",
        "assistant.",
        "<description>",
        "</description>",
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "\n",
        "[UNK]",
    }
    while len(words) < num_words:
        words.add("".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(2, 6))))
    vocab = {w: i for i, w in enumerate(sorted(words))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    tok.add_special_tokens(SPECIAL_TOKENS)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
        model_max_length=4096,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def _mrope_section(head_dim: int) -> list[int]:
    """Qwen's 1:1.5:1.5 split of head_dim/2 rotary pairs over (t, h, w): [16, 24, 24] at head_dim 128."""
    half = head_dim // 2
    return [half // 4, 3 * half // 8, 3 * half // 8]


def make_config(tokenizer, hidden: int = 64, layers: int = 2, vision_depth: int = 2, vision_hidden: int = 32):
    """A Qwen2_5_VLConfig small enough for millisecond forwards on a CPU."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default", "rope_theta": 10000.0, "mrope_section": _mrope_section(hidden // 4)
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden,
            "intermediate_size": 2 * vision_hidden,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": [vision_depth - 1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def randomize_(model: torch.nn.Module, seed: int, scale: float = 1.0) -> None:
    """Overwrite every parameter with seeded values that give peaky (not near-uniform) logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                value = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif p.ndim == 1:
                value = 0.02 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name or name.startswith("lm_head"):
                value = 0.5 * torch.randn(p.shape, generator=g)
            else:
                value = 0.08 * torch.randn(p.shape, generator=g)
            p.copy_(scale * value.to(p.dtype))


def make_model(tokenizer=None, seed: int = 0, **config):
    """(model, tokenizer): a random fp32 Qwen2_5_VLForConditionalGeneration in eval mode (config: make_config's)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = tokenizer or make_tokenizer()
    model = Qwen2_5_VLForConditionalGeneration(make_config(tokenizer, **config)).eval()
    randomize_(model, seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def make_image_processor():
    """The PIL backend of the Qwen2-VL image processor (no torchvision needed)."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def write_tiny_folder(out: str | Path, seed: int = 0, dtype: torch.dtype = torch.float32, tokenizer=None,
                      **config) -> Path:
    """Write an HF folder (config, safetensors, tokenizer, image processor) for a tiny random Qwen2.5-VL.

    tokenizer: any HF tokenizer with the Qwen special tokens (default: the word-level test tokenizer).

    With torchvision installed (vLLM machines) the full Qwen2_5_VLProcessor is saved too, which is
    what vLLM loads; without it the tokenizer and the PIL image processor are saved separately.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = make_model(tokenizer, seed=seed, **config)
    model.to(dtype).save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_processor(out, tokenizer)
    return out


def save_processor(out: str | Path, tokenizer, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> None:
    """Save the image processor (and, with torchvision, the full Qwen2_5_VLProcessor vLLM loads) into `out`."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels).save_pretrained(out)
    try:
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
            tokenizer=tokenizer,
            video_processor=Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
            chat_template=CHAT_TEMPLATE,
        )
        processor.save_pretrained(out)
    except (ImportError, AttributeError, ValueError):
        pass  # no torchvision: the tokenizer and the PIL image processor are what transformers and our server load
