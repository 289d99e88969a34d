"""A tiny word-level tokenizer built offline, with ids that match `helpers.tiny_model()`, and the processor on it.

Vocabulary (64 ids, `helpers.VOCAB`): `<pad>`=0, `<unk>`=1, `<s>`=2, `</s>`=3, chat words and filler words 4..61,
`<image>`=62 (`helpers.IMAGE_TOKEN`), `<video>`=63 (`helpers.VIDEO_TOKEN`). `<image>` and `<video>` are added special
tokens, so a run like `<video><video><video>` (the processor's placeholder expansion) splits into one id per token.
"""

from transformers import PreTrainedTokenizerFast

from helpers import IMAGE_TOKEN, VIDEO_TOKEN, VOCAB, tiny_config
from llava_next_ar import LlavaNextARConfig, LlavaNextARProcessor
from llava_next_ar.tiny_models import SPECIAL_TOKENS, word_level_tokenizer


CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }} : "
    "{% if message['content'] is string %}{{ message['content'] }} "
    "{% else %}{% for block in message['content'] %}"
    "{% if block['type'] == 'video' %}<video> "
    "{% elif block['type'] == 'image' %}<image> "
    "{% elif block['type'] == 'text' %}{{ block['text'] }} "
    "{% endif %}{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)
"""`user : <video> what happens ? assistant : `: one `<video>` / `<image>` per media block, in conversation order."""

WORDS = (
    "user assistant system : ? . , what happens in the video image describe a man is talking on phone car moves "
    "frame next and then it this clip shows person window road tree sky left right up down fast slow time"
).split()


def tiny_vocab() -> dict[str, int]:
    """Token -> id for all 64 ids (unused ids 4+len(WORDS)..61 are filler words `w<id>`)."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in WORDS:
        vocab[word] = len(vocab)
    while len(vocab) < IMAGE_TOKEN:
        vocab[f"w{len(vocab)}"] = len(vocab)
    vocab["<image>"] = IMAGE_TOKEN
    vocab["<video>"] = VIDEO_TOKEN
    assert len(vocab) == VOCAB
    return vocab


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """`llava_next_ar.tiny_models.word_level_tokenizer` over `tiny_vocab()` with `CHAT_TEMPLATE`."""
    tokenizer = word_level_tokenizer(tiny_vocab(), CHAT_TEMPLATE)
    assert tokenizer.convert_tokens_to_ids(["<pad>", "<image>", "<video>"]) == [0, IMAGE_TOKEN, VIDEO_TOKEN]
    return tokenizer


def tiny_processor(config: LlavaNextARConfig | None = None, **settings) -> LlavaNextARProcessor:
    """`LlavaNextARProcessor.from_model_config` for `config` (default `helpers.tiny_config()`) and `tiny_tokenizer()`;
    `settings` override the processor settings the config gives."""
    return LlavaNextARProcessor.from_model_config(config or tiny_config(), tiny_tokenizer(), **settings)
