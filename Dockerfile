# Images of Kadi's two binaries, built from one workspace:
#
#   docker build --target kadi            -t kadi:0.1.0 .
#   docker build --target kadi-controller -t kadi-controller:0.1.0 .
#
# Each final image holds one binary on distroless `cc` (glibc and libgcc, CA
# certificates, no shell, no package manager) and runs as uid 65532. TLS is
# rustls throughout, so no OpenSSL is needed at run time. The builder and the
# final images are both Debian 12 (bookworm), so the binaries find the glibc
# they were linked against; change them together.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

# Rust toolchain plus cargo-chef, shared by the planner and the builder.
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

# Reduce the workspace to its manifests and lock file (recipe.json). The
# recipe changes only when dependencies change, which keeps the next stage's
# dependency layer cached across source edits.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true
COPY --from=planner /build/recipe.json recipe.json
# The cached dependency layer: every third-party crate, compiled once.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        --package kadi --package kadi-controller
COPY . .
RUN cargo build --release --locked --bin kadi --bin kadi-controller \
 && mkdir -p /out \
 && cp target/release/kadi target/release/kadi-controller /out/

# The HTTP service. `kadi migrate` runs from the same image.
FROM gcr.io/distroless/cc-debian12:nonroot AS kadi
COPY --from=builder /out/kadi /usr/local/bin/kadi
USER 65532:65532
ENV KADI_LISTEN=0.0.0.0:8080 \
    KADI_LOG_FORMAT=json
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/kadi"]
CMD ["serve"]

# The ShortLink operator.
FROM gcr.io/distroless/cc-debian12:nonroot AS kadi-controller
COPY --from=builder /out/kadi-controller /usr/local/bin/kadi-controller
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/kadi-controller"]
