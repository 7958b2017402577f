# syntax=docker/dockerfile:1
# The lakeworker image: the release binary on distroless, run as a non-root user.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/lakeworker:TAG --push .
#
# Each platform is built natively by its own builder (on an x86 host buildx emulates arm64
# with QEMU, which is slow; a Graviton builder is fast). See deploy/README.md.

ARG RUST_VERSION=1.95.0

# cargo-chef turns the dependency graph into a recipe, so the dependencies (the AWS SDK,
# arrow, parquet: most of the build) are compiled in a layer that code changes do not touch.
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# No debug line tables and stripped symbols: about 34 MB instead of 267 MB.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin lakeworker --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin lakeworker \
    && cp target/release/lakeworker /usr/local/bin/lakeworker \
    && mkdir -p /rootfs/scratch

# distroless/cc: glibc, libgcc and CA certificates, no shell; user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/lakeworker /usr/local/bin/lakeworker
COPY config/container.toml /etc/lakeworker/config.toml
# Scratch space for a job's Parquet parts. With a read-only root file system, mount a
# writable volume here (deploy/ does); the image's own /scratch serves plain `docker run`.
COPY --from=builder --chown=65532:65532 /rootfs/scratch /scratch
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["lakeworker", "healthcheck"]
ENTRYPOINT ["lakeworker"]
CMD ["run", "--config", "/etc/lakeworker/config.toml"]
