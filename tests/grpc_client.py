"""The gRPC API checked with a client generated at test time from proto/ by grpcio-tools (not
our code), against the HTTP API of the same server.

usage: grpc_client.py GRPC_ADDR HTTP_URL MODEL API_KEY SERVER_PID
Ends by sending SIGTERM to SERVER_PID and checking the drain (health NOT_SERVING, new calls
UNAVAILABLE, the stream in flight finishes).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ADDR, HTTP, MODEL, KEY, SERVER_PID = sys.argv[1:6]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
AUTH = [("authorization", f"Bearer {KEY}")]


def generated_modules():
    out = tempfile.mkdtemp()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/proto", f"--python_out={out}",
         f"--grpc_python_out={out}", "t3d/v1/generation.proto"],
        check=True,
    )
    sys.path.insert(0, out)
    from t3d.v1 import generation_pb2, generation_pb2_grpc  # noqa: E402

    return generation_pb2, generation_pb2_grpc


pb, pb_grpc = generated_modules()
channel = grpc.insecure_channel(ADDR)
stub = pb_grpc.GenerationStub(channel)


def http_post(path, body):
    request = urllib.request.Request(
        HTTP + path, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    return urllib.request.urlopen(request, timeout=60)


def http_stream_blocks(path, body):
    """The SSE chunks' texts of choice 0, in order, and the final finish reason."""
    texts, finish = [], None
    with http_post(path, dict(body, stream=True)) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            text = choice.get("text", choice.get("delta", {}).get("content", ""))
            if text:
                texts.append(text)
            finish = choice["finish_reason"] or finish
    return texts, finish


def grpc_stream(request, metadata=AUTH):
    blocks, ends, usage = [], [], None
    for message in stub.Generate(request, metadata=metadata, timeout=60):
        kind = message.WhichOneof("event")
        if kind == "block":
            blocks.append(message.block)
        elif kind == "choice_end":
            ends.append(message.choice_end)
        else:
            usage = message.usage
    return blocks, ends, usage


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details(), dict(e.trailing_metadata() or ())
    return grpc.StatusCode.OK, "", {}


FINISH = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length"}
PROMPT = "The quick brown fox"
common = dict(max_tokens=24, temperature=0.0, steps_per_block=2, ignore_eos=True)

# ListModels: the served model.
models = stub.ListModels(pb.ListModelsRequest(), metadata=AUTH).models
assert [m.id for m in models] == [MODEL], models
assert models[0].version and models[0].block_size == 4

# Generate at T = 0 equals the HTTP API block by block.
blocks, ends, usage = grpc_stream(pb.GenerateRequest(text=PROMPT, **common))
texts, finish = http_stream_blocks("/v1/completions", dict(prompt=PROMPT, **common))
# HTTP sends no chunk for a block whose text is held back (empty); gRPC sends every block.
grpc_texts = [t for t in [b.text for b in blocks] + [ends[0].text] if t]
assert grpc_texts == texts, (grpc_texts, texts)
assert FINISH[ends[0].finish_reason] == finish
# Blocks are aligned at absolute positions: the first may hold the prompt's tail.
assert all(1 <= len(b.token_ids) <= 4 for b in blocks)
ids = [t for b in blocks for t in b.token_ids]
body = json.load(http_post("/v1/completions", dict(prompt=PROMPT, **common)))
assert body["usage"]["completion_tokens"] == len(ids) == usage.completion_tokens
assert body["usage"]["forward_passes"] == usage.forward_passes == ends[0].forward_passes
assert body["choices"][0]["text"] == "".join(grpc_texts)
assert bytes(t for t in ids if t < 256).decode("utf-8", "replace").startswith(grpc_texts[0][:1])
# Complete is the same answer at once.
done = stub.Complete(pb.GenerateRequest(text=PROMPT, **common), metadata=AUTH)
assert done.choices[0].text == "".join(grpc_texts) and list(done.choices[0].token_ids) == ids
assert done.usage.tokens_per_forward == usage.tokens_per_forward
assert done.system_fingerprint == models[0].version
# Token-id prompts and chat messages.
tokens = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[72, 105]), **common)
http_tokens = json.load(http_post("/v1/completions", dict(prompt=[72, 105], **common)))
assert stub.Complete(tokens, metadata=AUTH).choices[0].text == http_tokens["choices"][0]["text"]
chat = pb.ChatMessages(messages=[pb.ChatMessage(role="system", content="Be brief."),
                                 pb.ChatMessage(role="user", content="Hi there")])
grpc_chat = stub.Complete(pb.GenerateRequest(chat=chat, **common), metadata=AUTH)
http_chat = json.load(http_post("/v1/chat/completions", dict(
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
    **common)))
assert grpc_chat.choices[0].text == http_chat["choices"][0]["message"]["content"]
# stop_token_ids: the third completion token ends the answer on both transports, without its text.
stop_id = ids[2]
grpc_stop = stub.Complete(pb.GenerateRequest(text=PROMPT, stop_token_ids=[stop_id], **common), metadata=AUTH)
http_stop = json.load(http_post("/v1/completions", dict(prompt=PROMPT, stop_token_ids=[stop_id], **common)))
first = ids.index(stop_id)
assert list(grpc_stop.choices[0].token_ids) == ids[:first + 1], (grpc_stop, ids)
assert FINISH[grpc_stop.choices[0].finish_reason] == http_stop["choices"][0]["finish_reason"] == "stop"
assert grpc_stop.choices[0].text == http_stop["choices"][0]["text"]
# n with seeds: choice i of either transport uses seed + i.
sampled = dict(max_tokens=16, temperature=1.0, n=2, seed=11, ignore_eos=True)
grpc_n = stub.Complete(pb.GenerateRequest(text=PROMPT, **sampled), metadata=AUTH)
http_n = json.load(http_post("/v1/completions", dict(prompt=PROMPT, **sampled)))
assert [c.text for c in grpc_n.choices] == [c["text"] for c in http_n["choices"]]
assert len({c.text for c in grpc_n.choices}) > 1, "different seeds give different samples"

# Errors.
code, details, _ = code_of(lambda: stub.Complete(pb.GenerateRequest(text="x", top_p=5.0), metadata=AUTH))
assert code == grpc.StatusCode.INVALID_ARGUMENT and "top_p" in details, (code, details)
code, _, _ = code_of(lambda: stub.Complete(pb.GenerateRequest(), metadata=AUTH))
assert code == grpc.StatusCode.INVALID_ARGUMENT
code, _, _ = code_of(lambda: stub.Complete(pb.GenerateRequest(model="nope", text="x"), metadata=AUTH))
assert code == grpc.StatusCode.NOT_FOUND
for metadata in [(), [("authorization", "Bearer wrong")]]:
    code, _, _ = code_of(lambda: stub.Complete(pb.GenerateRequest(text="x"), metadata=metadata))
    assert code == grpc.StatusCode.UNAUTHENTICATED
long_request = pb.GenerateRequest(text=PROMPT, max_tokens=400, steps_per_block=4, ignore_eos=True,
                                  temperature=0.0)
code, _, _ = code_of(lambda: stub.Complete(long_request, metadata=AUTH, timeout=0.05))
assert code == grpc.StatusCode.DEADLINE_EXCEEDED, code


def metric(sample):
    """The value of one sample (`name` or `name{labels}` exactly as exported), 0 if absent."""
    text = urllib.request.urlopen(HTTP + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_idle():
    deadline = time.time() + 30
    while metric("t3d_running_requests") > 0 or metric("t3d_waiting_requests") > 0:
        assert time.time() < deadline, "the engine did not go idle"
        time.sleep(0.05)


wait_idle()
# Queue full: the server runs one sequence and queues two; more concurrent calls are refused.
streams = [stub.Generate(long_request, metadata=AUTH) for _ in range(5)]
refused = []
for s in streams:
    try:
        next(s)
    except grpc.RpcError as e:
        refused.append((e.code(), dict(e.trailing_metadata() or ())))
assert any(c == grpc.StatusCode.RESOURCE_EXHAUSTED and m.get("retry-after") == "1" for c, m in refused), refused
for s in streams:
    s.cancel()
wait_idle()

# A cancelled stream frees its slot.
cancelled_before = metric('t3d_request_failures_total{reason="cancelled"}')
stream = stub.Generate(long_request, metadata=AUTH)
first = next(stream)
assert first.WhichOneof("event") == "block"
assert metric("t3d_running_requests") == 1
stream.cancel()
wait_idle()
assert metric('t3d_request_failures_total{reason="cancelled"}') == cancelled_before + 1

# Reflection and health.
reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
services = {s.name for s in answer.list_services_response.service}
assert {"t3d.v1.Generation", "grpc.health.v1.Health"} <= services, services
health = health_pb2_grpc.HealthStub(channel)
for service in ["", "t3d.v1.Generation"]:
    status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
    assert status == health_pb2.HealthCheckResponse.SERVING, (service, status)
assert metric('t3d_grpc_requests_total{code="Ok",method="Generate"}') >= 1
assert metric('t3d_grpc_requests_total{code="InvalidArgument",method="Complete"}') >= 2

# Drain: SIGTERM while a stream runs.
drained = pb.GenerateRequest(text=PROMPT, max_tokens=200, steps_per_block=4, ignore_eos=True)
result = {}
thread = threading.Thread(target=lambda: result.update(out=grpc_stream(drained)))
thread.start()
while metric("t3d_running_requests") < 1:
    time.sleep(0.01)
os.kill(int(SERVER_PID), signal.SIGTERM)
deadline = time.time() + 10
while health.Check(health_pb2.HealthCheckRequest(service="")).status != health_pb2.HealthCheckResponse.NOT_SERVING:
    assert time.time() < deadline, "health never turned NOT_SERVING"
    time.sleep(0.02)
code, _, _ = code_of(lambda: stub.Complete(pb.GenerateRequest(text="x"), metadata=AUTH))
assert code == grpc.StatusCode.UNAVAILABLE, code
thread.join(60)
blocks, ends, usage = result["out"]
assert usage.completion_tokens == 200 and len(ends) == 1, "the stream in flight finished"
print("grpc client suite: ok")
