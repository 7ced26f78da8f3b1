"""Reference forward pass with `transformers`' Qwen3 (not our code), for the parity test.

Loads a checkpoint written by t3d as `Qwen3ForCausalLM`, runs it in f32 on the inputs of a
safetensors file (`input_ids`, `position_ids`, boolean `mask` [B,1,T,T], True = may attend) with
an additive float mask (transformers ignores bool 4-D masks in eager mode), and writes `logits`.

usage: hf_forward.py MODEL_DIR INPUTS.safetensors OUT.safetensors
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import Qwen3Config, Qwen3ForCausalLM  # noqa: E402


def main(model_dir, inputs_path, out_path):
    config = Qwen3Config.from_pretrained(model_dir)
    model = Qwen3ForCausalLM.from_pretrained(
        model_dir, config=config, torch_dtype=torch.float32, attn_implementation="eager"
    ).eval()
    inputs = load_file(inputs_path)
    mask = inputs["mask"].bool()
    additive = torch.zeros(mask.shape, dtype=torch.float32).masked_fill(~mask, torch.finfo(torch.float32).min)
    with torch.no_grad():
        out = model(
            input_ids=inputs["input_ids"],
            position_ids=inputs["position_ids"],
            attention_mask=additive,
            use_cache=False,
        )
    save_file({"logits": out.logits.float().contiguous()}, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
