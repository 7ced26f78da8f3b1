# t3d: serve few-step block-diffusion LMs (SDAR) and distil them with T3D.
#
#   docker build -t t3d .
#   docker run -p 8000:8000 t3d                                  # the bundled model
#   docker run -p 8000:8000 -e T3D_MODEL=/models/x -v ./x:/models/x t3d
#   docker run --gpus all -e T3D_DEVICE=cuda -e T3D_DTYPE=bf16 -p 8000:8000 t3d
#   docker run --rm t3d generate --prompt "17+4+12+9" --chat
#   docker stop -t 35 CONTAINER      # SIGTERM drains for --shutdown-grace (30 s) first
#
# Builder: the Rust image plus PyTorch 2.11.0 from PyPI, exactly as scripts/setup.sh installs
# it (the libtorch `tch` links against). Runtime: Debian slim with the binary, the libtorch and
# CUDA shared libraries it loads (at the same path, so the binary's rpath finds them), the
# bundled models and CA certificates. No compiler, pip or Python at run time.

FROM rust:1-bookworm AS builder
# DL3008 (pin apt versions) is ignored on purpose: bookworm point releases replace the exact
# versions, so pins break the build; the `bookworm` base tag already fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV TORCH_VERSION=2.11.0
RUN python3 -m venv /opt/t3d/venv \
    && /opt/t3d/venv/bin/pip install --no-cache-dir --disable-pip-version-check "torch==${TORCH_VERSION}" \
       nvidia-cuda-crt==13.0.88 \
    && torch_dir=$(/opt/t3d/venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))') \
    && echo "${TORCH_VERSION}" > "${torch_dir}/build-version" \
    && ln -s "${torch_dir}" /opt/t3d/libtorch
ENV LIBTORCH=/opt/t3d/libtorch
WORKDIR /src
# Dependencies first (their own layer): the manifests with stub sources.
COPY Cargo.toml Cargo.lock build.rs ./
COPY loadtest/Cargo.toml loadtest/Cargo.toml
COPY proto proto
RUN mkdir -p src loadtest/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && cargo build --release --locked --bin t3d \
    && rm -rf src loadtest/src target/release/t3d target/release/deps/t3d-* \
       target/release/.fingerprint/t3d-*
COPY src src
COPY loadtest/src loadtest/src
COPY assets assets
# The binary's rpath is $LIBTORCH/lib and libtorch finds the CUDA libraries at ../../nvidia:
# the runtime files are gathered in that layout (without the Python bindings).
RUN cargo build --release --locked --bin t3d \
    && cp target/release/t3d /usr/local/bin/t3d \
    && torch_lib=$(readlink -f /opt/t3d/libtorch)/lib \
    && mkdir -p /opt/t3d/runtime/libtorch \
    && mv "${torch_lib}" /opt/t3d/runtime/libtorch/lib \
    && mv "$(dirname "$(dirname "${torch_lib}")")/nvidia" /opt/t3d/runtime/nvidia \
    && rm -f /opt/t3d/runtime/libtorch/lib/libtorch_python.so

FROM debian:bookworm-slim
# DL3008 ignored for the reason given in the builder stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 t3d \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/t3d --create-home t3d
# libtorch and the CUDA runtime from the PyTorch wheels, where the binary's rpath looks.
COPY --from=builder /opt/t3d/runtime /opt/t3d
COPY --from=builder /usr/local/bin/t3d /usr/local/bin/t3d
COPY models /opt/t3d/models
WORKDIR /home/t3d
USER 10001:10001
ENV T3D_MODEL=/opt/t3d/models/arith-student \
    T3D_HOST=0.0.0.0 \
    T3D_GRPC_PORT=50051
EXPOSE 8000 8001 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["t3d", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["t3d"]
CMD ["serve", "--host", "0.0.0.0"]
