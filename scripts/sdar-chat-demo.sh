#!/usr/bin/env bash
# An SDAR-Chat-style checkpoint served end to end: the real Qwen vocabulary, a Qwen3-style
# chat_template.jinja and SDAR-Chat's generation_config.json (scripts/qwen_fixture.py), with
# weights that at every position say `a` (84% at the checkpoint's temperature 0.6) or end the
# turn (<|im_end|>). `t3d serve` answers the official openai client: chats stop at their turn
# end, and `enable_thinking: false` reaches the template. Prints start-up lines and transcript.
#
#   scripts/sdar-chat-demo.sh [DIR]      (default DIR: /tmp/t3d-sdar-chat)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh > /dev/null
dir=${1:-/tmp/t3d-sdar-chat}
.venv/bin/python scripts/qwen_fixture.py "$dir" --logits 151645=5,64=6 > /dev/null
cargo build --release -q --bin t3d
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/t3d serve --model "$dir" --port "$port" --served-model-name sdar-chat-mini \
  > "$dir/serve.log" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null; wait $server 2> /dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/ready" > /dev/null && break
  sleep 0.2
done
echo "== start-up (serve.log)"
grep -E "KV cache|decoding defaults" "$dir/serve.log" | sed -E 's/^.*(INFO|WARN)[^ ]* //'
echo "== transcript (openai client)"
.venv/bin/python - "http://127.0.0.1:$port/v1" <<'PY'
import sys
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused")
ask = [{"role": "user", "content": "Say a few a's, then stop."}]
for label, extra in [("default (thinking allowed)", {}),
                     ("enable_thinking: false", {"chat_template_kwargs": {"enable_thinking": False}})]:
    r = client.chat.completions.create(model="sdar-chat-mini", messages=ask, max_tokens=64, seed=7,
                                       extra_body=extra)
    c = r.choices[0]
    print(f"{label}: finish_reason={c.finish_reason!r} content={c.message.content!r} "
          f"prompt_tokens={r.usage.prompt_tokens} completion_tokens={r.usage.completion_tokens}")
stream = client.chat.completions.create(model="sdar-chat-mini", messages=ask, max_tokens=64, seed=3,
                                        stream=True)
parts, finish = [], None
for chunk in stream:
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
print(f"streamed: {''.join(parts)!r} finish_reason={finish!r}")
r = client.completions.create(model="sdar-chat-mini", prompt="Hi", max_tokens=16, seed=1,
                              extra_body={"ignore_eos": True, "stop": ["<|im_end|>"]})
print(f"completion with stop=['<|im_end|>'] and ignore_eos: text={r.choices[0].text!r} "
      f"finish_reason={r.choices[0].finish_reason!r}")
PY
