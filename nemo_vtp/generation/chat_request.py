"""One chat-completions request of `nemo-vtp serve`, from its JSON body to a Prompt and a SamplingConfig.

`ChatContext` holds what answering needs (engine, tokenizer, image processor, limits). Here: the
messages (text checked as Unicode, images through `serve_media`), the prompt tokens (a prompt that
cannot fit the context is refused before it is tokenized in full), the sampling fields, and the
token budget `prompt + max_tokens <= max_model_len` with vLLM's error wording.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nemo_vtp.config.generation import SamplingConfig
from nemo_vtp.config.serve import ServeConfig
from nemo_vtp.generation.engine import Prompt, expand_image_pads
from nemo_vtp.generation.http_guard import RequestError
from nemo_vtp.generation.serve_media import encode_images

ACCEPTED_FIELDS = {"messages", "model", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop",
                   "seed", "logprobs", "top_logprobs", "stream"}
# Fields that change nothing here; any other unknown field is an error, never silently ignored.
IGNORED_FIELDS = {"user", "metadata", "store"}
PROBE_CHARS_PER_TOKEN = 8  # prose averages 3-5 characters a token: a prefix this long settles an oversize prompt


@dataclass
class ChatContext:
    """What a request handler needs: the engine, how to build prompts, the served name and the limits."""

    engine: Any  # an Engine
    tokenizer: Any
    image_processor: Any | None
    model_name: str
    max_model_len: int  # prompt + completion tokens
    max_token_chars: int  # characters of the longest vocabulary entry (bounds characters per token)
    cfg: ServeConfig = field(default_factory=ServeConfig)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time
    decode_slots: threading.BoundedSemaphore = field(init=False)  # image decodes at once

    def __post_init__(self) -> None:
        self.decode_slots = threading.BoundedSemaphore(self.cfg.max_concurrent_decodes)

    @property
    def media_root(self) -> Path | None:
        root = self.cfg.allowed_local_media_path
        return None if root is None else Path(root).resolve()


# ---------------------------------------------------------------------- request -> Prompt
def _image_url(part: dict, at: str) -> str:
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    if not isinstance(url, str):
        raise RequestError(400, f"{at}.image_url.url must be a string", at)
    return url


def _utf8(text: str, at: str) -> str:
    """`text`, if it is valid Unicode (JSON's "\\ud800" escapes decode to lone surrogates the tokenizer rejects)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(400, f"{at} is not valid Unicode (a lone surrogate escape)", at) from None
    return text


def to_hf_messages(messages: Any) -> tuple[list[dict], list[tuple[str, str]]]:
    """OpenAI chat messages -> (messages for the HF chat template, (image url, field) in order)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "`messages` must be a non-empty list", "messages")
    hf_messages, images = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise RequestError(400, f"{where} needs a role of system, user or assistant", where)
        content = message.get("content")
        if isinstance(content, str):
            hf_messages.append({"role": message["role"], "content": _utf8(content, f"{where}.content")})
            continue
        if not isinstance(content, list):
            raise RequestError(400, f"{where}.content must be a string or a list of parts", f"{where}.content")
        parts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": _utf8(part["text"], at)})
            elif kind == "image_url":
                images.append((_image_url(part, at), at))
                parts.append({"type": "image"})
            else:
                raise RequestError(400, f"{at}: supported parts are text and image_url", at)
        hf_messages.append({"role": message["role"], "content": parts})
    return hf_messages, images


def build_prompt(ctx: ChatContext, messages: Any) -> Prompt:
    """Chat messages -> a Prompt with expanded image pads, pixel values and grids."""
    hf_messages, urls = to_hf_messages(messages)
    if len(urls) > ctx.cfg.max_images_per_request:
        raise RequestError(400, f"{len(urls)} images in one request; this server takes at most "
                                f"{ctx.cfg.max_images_per_request}", "messages")
    text = ctx.tokenizer.apply_chat_template(hf_messages, add_generation_prompt=True, tokenize=False)
    token_ids = tokenize_prompt(ctx.tokenizer, text, ctx.max_model_len, ctx.max_token_chars)
    if not urls:
        return Prompt(token_ids=token_ids, text=text)
    if ctx.image_processor is None:
        raise RequestError(400, "this model folder has no image processor: send text only", "messages")
    pixel_values, grid = encode_images(ctx.image_processor, urls, root=ctx.media_root,
                                       max_image_pixels=ctx.cfg.max_image_pixels, slots=ctx.decode_slots)
    per_image = (grid.prod(-1) // ctx.image_processor.merge_size**2).tolist()
    image_pad = ctx.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    try:
        token_ids = expand_image_pads(token_ids, image_pad, per_image)
    except ValueError as err:
        raise RequestError(400, f"the chat template and the images disagree: {err}", "messages") from None
    return Prompt(token_ids=token_ids, pixel_values=pixel_values, image_grid_thw=grid, text=text)


def requested_max_tokens(body: dict) -> Any:
    """`max_completion_tokens`, else `max_tokens`, else None (unvalidated)."""
    return next((body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), None)


def parse_sampling(body: dict, default_max_tokens: int) -> tuple[SamplingConfig, bool]:
    """Request fields -> (SamplingConfig, whether to return log-probs)."""
    unknown = sorted(set(body) - ACCEPTED_FIELDS - IGNORED_FIELDS)
    if unknown:
        raise RequestError(400, f"unsupported request field(s): {', '.join(unknown)}", unknown[0])
    if body.get("stream"):
        raise RequestError(400, "streaming is not supported: set stream=false", "stream")
    logprobs = body.get("logprobs") or False
    if not isinstance(logprobs, bool):
        raise RequestError(400, "`logprobs` must be a boolean", "logprobs")
    top = body.get("top_logprobs") or 0
    if top and not logprobs:
        raise RequestError(400, "`top_logprobs` needs `logprobs: true`", "top_logprobs")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise RequestError(400, "`seed` must be an integer in [0, 2**63)", "seed")
    requested = requested_max_tokens(body)
    values = {
        "n": body.get("n", 1),
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "max_new_tokens": default_max_tokens if requested is None else requested,
        "stop": stop,
        "seed": seed,
        "top_logprobs": top,
    }
    try:
        return SamplingConfig(**values), logprobs
    except ValidationError as err:
        first = err.errors()[0]
        field = {"max_new_tokens": "max_tokens"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise RequestError(400, f"`{field}`: {first['msg']}", field) from None


def _messages_too_long(max_model_len: int, how: str) -> RequestError:
    return RequestError(400, f"This model's maximum context length is {max_model_len} tokens. However, your messages "
                             f"alone are longer ({how}). Please reduce the length of the messages.", "messages")


def tokenize_prompt(tokenizer, text: str, max_model_len: int, max_token_chars: int) -> list[int]:
    """Token ids of a prompt text. A text that cannot fit the context is refused without tokenizing all
    of it (a 32 MB body takes minutes): first by length (no token spans more than `max_token_chars`
    characters), then by the tokens of a prefix of PROBE_CHARS_PER_TOKEN characters per context token,
    cut before a space so that it has at most one token more than the same stretch of the whole text."""
    if len(text) > max_model_len * max_token_chars:
        raise _messages_too_long(max_model_len, f"{len(text)} characters, at most {max_token_chars} per token")
    probe = max_model_len * PROBE_CHARS_PER_TOKEN
    cut = text.rfind(" ", 0, probe) if len(text) > probe else -1
    if cut > 0:
        head = len(tokenizer(text[:cut], add_special_tokens=False)["input_ids"])
        if head > max_model_len + 1:
            raise _messages_too_long(max_model_len, f"their first {cut} characters are {head} tokens")
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def context_length_error(max_model_len: int, prompt_tokens: int | None, completion_tokens: int) -> RequestError:
    """The error of a request that does not fit the context (vLLM's wording); prompt_tokens None: not
    counted yet, the completion alone is too long."""
    if prompt_tokens is None:
        return RequestError(400, f"This model's maximum context length is {max_model_len} tokens. However, you "
                                 f"requested {completion_tokens} tokens in the completion alone. Please reduce "
                                 "max_tokens.", "max_tokens")
    return RequestError(
        400, f"This model's maximum context length is {max_model_len} tokens. However, you requested "
             f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, {completion_tokens} "
             "in the completion). Please reduce the length of the messages or completion.",
        "messages" if prompt_tokens >= max_model_len else "max_tokens")


def completion_budget(max_model_len: int, prompt_tokens: int, requested: int | None, default: int) -> int:
    """max_new_tokens for a prompt: the requested count if prompt + it fits the context, else 400;
    without a request, the server default cut to what the context leaves.

    >>> completion_budget(100, 90, None, 256), completion_budget(100, 90, 10, 256)
    (10, 10)
    """
    wanted = default if requested is None else requested
    room = max_model_len - prompt_tokens
    if room < 1 or (requested is not None and requested > room):
        raise context_length_error(max_model_len, prompt_tokens, wanted)
    return min(wanted, room)
