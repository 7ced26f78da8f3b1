"""Checks a live `t3d serve` through the official `openai` client and raw HTTP.

Run by tests/server.rs: python server_client.py BASE_URL MODEL API_KEY METRICS_OUT
Every check asserts; the script exits non-zero on the first failure.
"""
import concurrent.futures as cf
import http.client
import json
import sys
import urllib.parse

from openai import OpenAI

BASE, MODEL, KEY, METRICS_OUT = sys.argv[1:5]
client = OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0)
HOST = urllib.parse.urlparse(BASE)


def raw(method, path, body=b"", headers=None, auth=True):
    conn = http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=30)
    h = {"Content-Type": "application/json"}
    if auth:
        h["Authorization"] = "Bearer " + KEY
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def complete(prompt, **kw):
    return client.completions.create(model=MODEL, prompt=prompt, temperature=0, **kw)


def check_completions():
    r = complete("12+7", max_tokens=12)
    assert r.object == "text_completion" and r.model == MODEL, r
    choice = r.choices[0]
    assert choice.finish_reason in ("stop", "length") and isinstance(choice.text, str)
    usage = r.usage.model_dump()
    assert usage["completion_tokens"] > 0 and usage["forward_passes"] > 0, usage
    assert abs(usage["tokens_per_forward"] - usage["completion_tokens"] / usage["forward_passes"]) < 1e-9
    chunks = list(complete("12+7", max_tokens=12, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == choice.text, (text, choice.text)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason], finishes
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    # One content chunk per committed block at most (b = 4, 12 tokens -> at most 3 blocks + final).
    assert len([c for c in chunks if c.choices]) <= 4
    ids = complete([5, 6, 7], max_tokens=4)
    assert ids.usage.prompt_tokens == 3


def check_chat():
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "3+4"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_completion_tokens=8)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=8, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason


def check_n_and_seed():
    r = client.completions.create(model=MODEL, prompt="ab", n=3, seed=7, temperature=1.0, max_tokens=8)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    again = client.completions.create(model=MODEL, prompt="ab", n=3, seed=7, temperature=1.0, max_tokens=8)
    assert [c.text for c in again.choices] == [c.text for c in r.choices], "seeded sampling is reproducible"


def check_batch_invariance():
    prompts = ["1+2", "hello there", "9", "a longer prompt of text", "x", "77+5+3"]
    settings = [{}, {"block_size": 2, "steps_per_block": 1}, {"steps_per_block": 2}]
    jobs = [(p, s) for p in prompts for s in settings]
    solo = [complete(p, max_tokens=16, extra_body=s).choices[0].text for p, s in jobs]
    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda j: complete(j[0], max_tokens=16, extra_body=j[1]).choices[0].text, jobs))
    assert together == solo, [(j, a, b) for j, a, b in zip(jobs, solo, together) if a != b]


def check_logprobs():
    """Each text token's log-probability in the forward that unmasked it, in OpenAI's shapes."""
    plain = {"ignore_eos": True}
    r = complete("12+7", max_tokens=12, logprobs=2, extra_body=plain)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert len(lp.tokens) == r.usage.completion_tokens == 12, lp
    # Two alternatives each (fewer keys when two tokens decode to the same text).
    assert all(v <= 0 for v in lp.token_logprobs) and all(1 <= len(t) <= 2 for t in lp.top_logprobs), lp
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    # Greedy: every committed token is its forward's likeliest (no alternative beats it).
    assert all(max(top.values()) <= v for top, v in zip(lp.top_logprobs, lp.token_logprobs)), lp
    chunks = list(complete("12+7", max_tokens=12, logprobs=2, stream=True, extra_body=plain))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.token_logprobs]
    assert streamed == lp.token_logprobs, (streamed, lp.token_logprobs)
    offsets = [o for c in chunks if c.choices and c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset]
    assert offsets == lp.text_offset, (offsets, lp.text_offset)

    msgs = [{"role": "user", "content": "3+4"}]
    extra = {"ignore_eos": True, "logprob_steps": True}
    chat = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=8,
                                          logprobs=True, top_logprobs=3, extra_body=extra)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens == 8
    for entry in content:
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].logprob == entry.logprob
        assert entry.bytes == list(entry.token.encode()) and entry.model_extra["step"] >= 1
    steps = [e.model_extra["step"] for e in content]
    # Positions of a block unmask in any order, at steps of this request's forwards.
    assert all(1 <= s <= chat.usage.forward_passes for s in steps) and len(set(steps)) > 1, steps
    stream = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=8,
                                            logprobs=True, top_logprobs=3, stream=True, extra_body=extra)
    streamed = [e.logprob for c in stream if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert streamed == [e.logprob for e in content]
    bare = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=4)
    assert bare.choices[0].logprobs is None


def check_sampling_controls():
    """min_p, the three penalties and entropy_bound are accepted and change what they should."""
    base = complete("aaaa", max_tokens=16, extra_body={"ignore_eos": True}).choices[0].text
    strong = {"ignore_eos": True, "presence_penalty": 2.0, "frequency_penalty": 2.0, "repetition_penalty": 3.0}
    penalised = complete("aaaa", max_tokens=16, extra_body=strong).choices[0].text
    assert penalised != base, (penalised, base)
    r = complete("aaaa", max_tokens=8, extra_body={"min_p": 0.2, "entropy_bound": 0.5,
                                                    "remasking": "entropy_bounded"})
    assert r.choices[0].finish_reason in ("stop", "length")
    # One step per block, so the order positions unmask in (confidence) does not matter.
    one_step = {"ignore_eos": True, "steps_per_block": 1}
    r = client.completions.create(model=MODEL, prompt="ab", temperature=1.0, max_tokens=8, seed=3,
                                  extra_body={"min_p": 1.0, **one_step})
    greedy = complete("ab", max_tokens=8, extra_body=one_step)
    assert r.choices[0].text == greedy.choices[0].text, "min_p 1 keeps only the likeliest token"


def check_errors():
    big = b'{"prompt": "' + b"a" * (2 << 20) + b'"}'
    cases = [
        ("/v1/completions", b"{not json", 400, None),
        ("/v1/completions", b"[1, 2]", 400, None),
        ("/v1/completions", json.dumps({"prompt": 5}).encode(), 400, "prompt"),
        ("/v1/completions", json.dumps({"prompt": "a", "max_tokens": -3}).encode(), 400, "max_tokens"),
        ("/v1/completions", json.dumps({"prompt": "a", "max_tokens": 10**9}).encode(), 400, "max_tokens"),
        ("/v1/completions", json.dumps({"prompt": "a", "temperature": "hot"}).encode(), 400, "temperature"),
        ("/v1/completions", json.dumps({"prompt": "a", "top_p": 7}).encode(), 400, "top_p"),
        ("/v1/completions", json.dumps({"prompt": "a", "n": 100}).encode(), 400, "n"),
        ("/v1/completions", json.dumps({"prompt": "a", "model": "gpt-9"}).encode(), 404, "model"),
        ("/v1/completions", json.dumps({"prompt": "a", "logprobs": 21}).encode(), 400, "logprobs"),
        ("/v1/completions", json.dumps({"prompt": "a", "echo": True}).encode(), 400, "echo"),
        ("/v1/completions", json.dumps({"prompt": "a", "frequency_penalty": 2.5}).encode(), 400, "frequency_penalty"),
        ("/v1/completions", json.dumps({"prompt": [999999]}).encode(), 400, "prompt"),
        ("/v1/completions", json.dumps({"prompt": "a", "block_size": 3}).encode(), 400, "block_size"),
        ("/v1/completions", json.dumps({"prompt": ""}).encode(), 400, "prompt"),
        ("/v1/completions", b'{"prompt": "\xff\xfe"}', 400, None),
        ("/v1/completions", big, 413, None),
        ("/v1/chat/completions", json.dumps({"messages": []}).encode(), 400, "messages"),
        ("/v1/chat/completions", json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "messages"),
        ("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}).encode(), 400, "tools"),
        ("/v1/chat/completions", json.dumps({"messages": "hi"}).encode(), 400, "messages"),
        ("/v1/nope", b"{}", 404, None),
    ]
    for path, body, status, param in cases:
        got, headers, data = raw("POST", path, body)
        assert got == status, (path, body[:60], got, data[:200])
        err = json.loads(data)["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], err
        assert err["param"] == param, (body[:60], err)
    status, _, data = raw("POST", "/v1/completions", json.dumps({"prompt": "a"}).encode(), auth=False)
    assert status == 401 and json.loads(data)["error"]["code"] == "invalid_api_key"
    assert complete("still serving", max_tokens=4).choices[0].finish_reason in ("stop", "length")


def check_models_and_probes():
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert raw("GET", "/health", auth=False)[0] == 200
    assert raw("GET", "/ready", auth=False)[0] == 200
    status, headers, _ = raw("GET", "/health")
    assert "x-request-id" in {k.lower() for k in headers}


def check_metrics():
    status, _, data = raw("GET", "/metrics", auth=False)
    assert status == 200
    text = data.decode()
    for name in ["t3d_tokens_per_forward_bucket", "t3d_denoising_steps_per_block_sum",
                 "t3d_forwards_per_request_count", "t3d_time_to_first_block_seconds_bucket",
                 't3d_http_requests_total{route="/v1/completions",status="400"}',
                 't3d_http_requests_total{route="/v1/completions",status="200"}']:
        assert name in text, name
    done = [l for l in text.splitlines() if l.startswith("t3d_forwards_per_request_count")]
    assert int(float(done[0].split()[-1])) > 10, done
    with open(METRICS_OUT, "w") as f:
        f.write(text)


for check in [check_models_and_probes, check_completions, check_chat, check_logprobs,
              check_sampling_controls, check_n_and_seed, check_batch_invariance, check_errors,
              check_metrics]:
    check()
    print("ok", check.__name__, flush=True)
