"""A straightforward Python block-diffusion decoding loop over `transformers`' Qwen3, for a
side-by-side speed comparison with `t3d bench` (same checkpoint, same algorithm and settings).

Algorithm (spec §3.8, as upstream writes it): block-causal prefill of the prompt's whole blocks
into a DynamicCache; per block S denoising forwards over [cache ; block] (the cache is cropped
back after each), greedy static low-confidence unmasking, then one more forward that stores the
finished block's keys/values. Random prompt ids, EOS ignored, equal prompt lengths.

usage: hf_decode_bench.py MODEL_DIR [--batch-sizes 1,16] [--steps 1,4] [--block-size 4]
       [--prompt-len 32] [--gen-tokens 64] [--repeats 3] [--json OUT] [--device cuda]
       [--dtype bf16]
       hf_decode_bench.py MODEL_DIR --decode-ids 1,2,3 --steps S --gen-tokens N
           (no timing: prints the greedy completion ids of that prompt as JSON, for tests)
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from transformers import DynamicCache, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def additive(mask, dtype):
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def decode(model, prompts, block, steps, gen_tokens, mask_id):
    batch, plen = prompts.shape
    dev, dtype = prompts.device, model.dtype
    whole = plen // block * block
    cache = DynamicCache()
    if whole:
        pos = torch.arange(whole, device=dev)
        blocks = pos // block
        mask = (blocks[None, :] <= blocks[:, None])[None, None].expand(batch, 1, whole, whole)
        model(input_ids=prompts[:, :whole], position_ids=pos[None].expand(batch, -1),
              attention_mask=additive(mask, dtype), past_key_values=cache, use_cache=True)
    ctx = whole
    cur = prompts[:, whole:]
    tail = cur.shape[1]
    out = []
    schedule = [block // steps + (1 if s < block % steps else 0) for s in range(steps)]
    while sum(t.shape[1] for t in out) < gen_tokens:
        blk = torch.cat([cur, torch.full((batch, block - tail), mask_id, device=dev)], dim=1)
        pos = torch.arange(ctx, ctx + block, device=dev)[None].expand(batch, -1)
        full = additive(torch.ones(batch, 1, block, ctx + block, dtype=torch.bool, device=dev), dtype)
        for n in schedule:
            maskable = blk == mask_id
            if not maskable.any():
                break
            logits = model(input_ids=blk, position_ids=pos, attention_mask=full,
                           past_key_values=cache, use_cache=True).logits
            cache.crop(-block)
            conf, tok = logits.float().softmax(-1).max(-1)
            conf = conf.masked_fill(~maskable, float("-inf"))
            k = min(n, int(maskable.sum(1).min()))
            idx = conf.topk(k, dim=1).indices
            blk = blk.scatter(1, idx, tok.gather(1, idx))
        model(input_ids=blk, position_ids=pos, attention_mask=full, past_key_values=cache, use_cache=True)
        ctx += block
        out.append(blk[:, tail:])
        cur = blk[:, :0]
        tail = 0
    return torch.cat(out, dim=1)[:, :gen_tokens]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch-sizes", default="1,16")
    ap.add_argument("--steps", default="1,4")
    ap.add_argument("--block-size", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--decode-ids")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    args = ap.parse_args()
    config = Qwen3Config.from_pretrained(args.model)
    model = Qwen3ForCausalLM.from_pretrained(args.model, config=config, torch_dtype=DTYPES[args.dtype],
                                             attn_implementation="sdpa").to(args.device).eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    mask_id = json.load(open(os.path.join(args.model, "config.json")))["mask_token_id"]
    if args.decode_ids:
        prompt = torch.tensor([[int(t) for t in args.decode_ids.split(",")]], device=args.device)
        with torch.inference_mode():
            out = decode(model, prompt, args.block_size, int(args.steps), args.gen_tokens, mask_id)
        print(json.dumps(out[0].tolist()))
        return
    rows = []
    print(f"{'batch':>5} {'S':>3} {'tok/s':>10}")
    gen = torch.Generator().manual_seed(7)
    for batch in map(int, args.batch_sizes.split(",")):
        for steps in map(int, args.steps.split(",")):
            prompts = torch.randint(0, 256, (batch, args.prompt_len), generator=gen).to(args.device)
            times = []
            with torch.inference_mode():
                decode(model, prompts, args.block_size, steps, args.gen_tokens, mask_id)
                for _ in range(args.repeats):
                    sync()
                    start = time.perf_counter()
                    decode(model, prompts, args.block_size, steps, args.gen_tokens, mask_id)
                    sync()
                    times.append(time.perf_counter() - start)
            secs = statistics.median(times)
            tps = batch * args.gen_tokens / secs
            rows.append({"batch": batch, "steps_per_block": steps, "seconds": secs, "tokens_per_second": tps})
            print(f"{batch:>5} {steps:>3} {tps:>10.1f}", flush=True)
            if args.json:  # after every setting, so a run cut short keeps what it measured
                peak = torch.cuda.max_memory_reserved() if args.device.startswith("cuda") else None
                json.dump({"model": args.model, "device": args.device, "dtype": args.dtype,
                           "torch_threads": torch.get_num_threads(), "peak_memory_reserved": peak,
                           "rows": rows}, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    main()
