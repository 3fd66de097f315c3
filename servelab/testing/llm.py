"""Tiny Llama models made offline: a tokenizer trained on local text and seeded weights, saved the Hugging Face way.

The shape runs on vLLM's CPU attention backend (head size 32) and is small enough to serve in tests;
``layers``/``hidden`` grow it to a few hundred MB for timing. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

TINY = {"hidden": 64, "heads": 2, "layers": 2, "vocab": 1024}
TIMING = {"hidden": 1024, "heads": 32, "layers": 16, "vocab": 8192}  # head size 32, about 480 MB in bf16

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = """\
Ray Serve scales model replicas across a cluster of machines. Each replica loads its weights once and
then answers requests. Streaming weights from object storage lets a new replica start quickly.
The quick brown fox jumps over the lazy dog. A notebook is a good place to try a model, watch the
cluster and move replicas onto fewer nodes when traffic drops. Hello, how are you today? I am well.
"""


def write_tiny_llama(
    directory: str | Path,
    *,
    hidden: int = TINY["hidden"],
    heads: int = TINY["heads"],
    layers: int = TINY["layers"],
    vocab: int = TINY["vocab"],
    max_shard_size: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
) -> Path:
    """Write a seeded Llama with its tokenizer and chat template to ``directory``; return it.

    ``max_shard_size`` (e.g. ``"200KB"``) makes ``save_pretrained`` write shards and an index;
    ``dtype`` is the saved weights' (``"bfloat16"`` halves the bytes of a timing model).

    >>> model_dir = write_tiny_llama("/tmp/tiny-llama")
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype=dtype,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # wider weights than the default init, so greedy outputs vary with the prompt
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.2)
    model.to(getattr(torch, dtype))
    options = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, safe_serialization=True, **options)
    tokenizer.save_pretrained(directory)
    for path in directory.iterdir():  # save_pretrained writes 0600 files; nginx's worker must read them
        path.chmod(0o644)
    return directory


def _train_tokenizer(vocab: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def greedy_tokens(model_dir: str | Path, prompt: str | list[dict[str, str]], max_new_tokens: int) -> list[int]:
    """transformers' greedy ``generate()`` on the same weights: the tokens vLLM must answer, one for one.

    A list of messages is rendered with the model's chat template, as ``/v1/chat/completions`` does.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # in a notebook its bar is a widget output nbval would compare
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if isinstance(prompt, str):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
    else:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)[
            "input_ids"
        ]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0][ids.shape[1] :].tolist()
