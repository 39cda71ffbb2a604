"""The pure pieces of `nemo-vtp serve`'s defences: Content-Length parsing, the key check, the token
budget and the local-path rule (the HTTP behaviour is tested in tests/faults/test_serve_faults.py)."""

import doctest
from email.message import Message

import pytest

from nemo_vtp.generation import chat_request, http_guard, serve_media, server
from nemo_vtp.generation.chat_request import completion_budget, tokenize_prompt
from nemo_vtp.generation.http_guard import RequestError, bearer_ok, content_length
from nemo_vtp.generation.serve_media import LOCAL_MEDIA_REFUSED, local_image_path


@pytest.mark.parametrize("module", [chat_request, http_guard, serve_media, server])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def _headers(*pairs: tuple[str, str]) -> Message:
    headers = Message()
    for key, value in pairs:
        headers[key] = value
    return headers


@pytest.mark.parametrize(("pairs", "expected"), [
    ([("Content-Length", "0")], 0),
    ([("Content-Length", " 17 ")], 17),
    ([("Content-Length", "100"), ("Content-Length", "100")], 100),
    ([("Content-Length", "-1")], 400),
    ([("Content-Length", "abc")], 400),
    ([("Content-Length", "١٢")], 400),  # Arabic-Indic digits: int() would take them
    ([("Content-Length", "1e3")], 400),
    ([("Content-Length", "5"), ("Content-Length", "6")], 400),
    ([], 411),
    ([("Transfer-Encoding", "chunked"), ("Content-Length", "5")], 411),
    ([("Content-Length", "101")], 413),
])
def test_content_length(pairs, expected):
    if expected < 400:
        assert content_length(_headers(*pairs), 100) == expected
    else:
        with pytest.raises(RequestError) as err:
            content_length(_headers(*pairs), 100)
        assert err.value.status == expected


@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer k1", True), ("bearer k1", True), ("  Bearer   k1 ", True), ("Bearer k2", False), ("Bearer k1x", False),
    ("Basic k1", False), ("k1", False), ("", False), (None, False), ("Bearer ", False), ("Bearer ké", False),
])
def test_bearer_ok(header, ok):
    assert bearer_ok(header, "k1") is ok


@pytest.mark.parametrize(("prompt", "requested", "budget"), [
    (10, None, 8), (95, None, 5), (99, None, 1), (10, 90, 90), (10, 1, 1),
    (100, None, 400), (120, None, 400), (10, 91, 400), (99, 2, 400),
])
def test_completion_budget(prompt, requested, budget):
    if budget != 400:
        assert completion_budget(100, prompt, requested, 8) == budget
        return
    with pytest.raises(RequestError) as err:
        completion_budget(100, prompt, requested, 8)
    assert err.value.status == 400 and "maximum context length is 100 tokens" in err.value.message
    assert err.value.param == ("messages" if prompt >= 100 else "max_tokens")


def test_local_image_path(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.png").write_bytes(b"x")
    (outside / "b.png").write_bytes(b"x")
    (root / "link.png").symlink_to(outside / "b.png")
    (root / "inner.png").symlink_to(root / "sub" / "a.png")
    root = root.resolve()
    assert local_image_path(str(root / "sub" / "a.png"), root, "p") == root / "sub" / "a.png"
    assert local_image_path("sub/a.png", root, "p") == root / "sub" / "a.png"  # relative to the root
    assert local_image_path(f"file://{root}/inner.png", root, "p") == root / "sub" / "a.png"  # a link that stays in
    for refused in [str(outside / "b.png"), "../outside/b.png", str(root / "link.png"), str(root / "sub"),
                    str(root / "none.png"), "sub/a.png\x00", "/dev/null"]:
        with pytest.raises(RequestError) as err:
            local_image_path(refused, root, "p")
        assert (err.value.status, err.value.message) == (400, LOCAL_MEDIA_REFUSED), refused
    with pytest.raises(RequestError):
        local_image_path(str(root / "sub" / "a.png"), None, "p")  # no root: nothing local


class _TenCharTokenizer:
    """One token per 10 characters; records the lengths of the texts it was asked to tokenize."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        self.calls.append(len(text))
        return {"input_ids": list(range(-(-len(text) // 10)))}


@pytest.mark.parametrize(("chars", "refused", "calls"), [
    (500, False, [500]),  # short: tokenized once, whole
    (900, False, [799, 900]),  # past the probe (800 characters) but fits: a prefix, then the whole
    (999, False, [799, 999]),
    (1001, True, []),  # over 100 tokens x 10 characters: refused by length alone
])
def test_tokenize_prompt_refuses_without_tokenizing_everything(chars, refused, calls):
    text = ("a" * 9 + " ") * (chars // 10) + "b" * (chars % 10)
    tokenizer = _TenCharTokenizer()
    if refused:
        with pytest.raises(RequestError) as err:
            tokenize_prompt(tokenizer, text, 100, 10)
        assert err.value.param == "messages" and "maximum context length is 100 tokens" in err.value.message
    else:
        assert len(tokenize_prompt(tokenizer, text, 100, 10)) == -(-chars // 10)
    assert tokenizer.calls == calls


def test_tokenize_prompt_refuses_long_prose_from_a_prefix():
    from nemo_vtp.data.tokenizer import load_tokenizer

    tokenizer, lengths = load_tokenizer(), []
    counting = lambda text, add_special_tokens: (lengths.append(len(text)), tokenizer(text, add_special_tokens=False))[1]  # noqa: E731
    prose = "what is the image about, tell me " * 150  # 4,950 characters (under 256 x 20), ~2,200 tokens
    with pytest.raises(RequestError) as err:
        tokenize_prompt(counting, prose, 256, 20)
    assert "first" in err.value.message and lengths == [prose.rfind(" ", 0, 256 * 8)]
    short = "what is the image about"
    assert tokenize_prompt(tokenizer, short, 256, 20) == tokenizer(short, add_special_tokens=False)["input_ids"]
