# pgveil container image: a static-ish Rust binary on a distroless base (glibc, CA
# certificates, a `nonroot` user, no shell, no package manager).
#
#   docker build -t pgveil:dev --build-arg PGVEIL_GIT_COMMIT="$(git rev-parse --short HEAD)" .
#
# The image is validated with hadolint in the test suite; building it needs a Docker daemon and
# is documented, not tested (docs/deploy.md). Pin both bases by digest in production builds.

# ---- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
ARG PGVEIL_GIT_COMMIT=unknown
ENV PGVEIL_GIT_COMMIT=${PGVEIL_GIT_COMMIT} \
    CARGO_TERM_COLOR=never
WORKDIR /src
# Dependencies first, so editing src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin pgveil \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin pgveil \
    && install -D -m 0755 target/release/pgveil /out/usr/local/bin/pgveil \
    # The directories the runtime image needs, owned by the distroless nonroot user (65532):
    # a named volume mounted there inherits this owner and mode.
    && install -d -m 0755 /out/etc/pgveil/rules \
    && install -d -m 0700 -o 65532 -g 65532 /out/var/lib/pgveil /out/var/lib/pgveil/audit \
        /out/var/lib/pgveil/keys

# ---- runtime -------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
# 12-factor configuration: every `pgveil serve` flag has a PGVEIL_* variable (flag > env >
# config file). Listen on all interfaces inside the container; publish ports deliberately.
ENV PGVEIL_LISTEN=0.0.0.0:6432 \
    PGVEIL_METRICS_LISTEN=0.0.0.0:6438 \
    PGVEIL_RULES=/etc/pgveil/rules \
    PGVEIL_AUDIT_DIR=/var/lib/pgveil/audit \
    PGVEIL_LOG_FORMAT=json \
    PGVEIL_LOG=info
USER 65532:65532
WORKDIR /var/lib/pgveil
# 6432: PostgreSQL clients. 6438: /metrics, /healthz, /readyz.
EXPOSE 6432 6438
VOLUME ["/var/lib/pgveil/audit"]
# Liveness without a shell: the binary asks its own /healthz. Kubernetes ignores HEALTHCHECK
# and uses the probes in deploy/k8s instead (/healthz liveness, /readyz readiness).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/pgveil", "probe", "--path", "/healthz"]
ENTRYPOINT ["/usr/local/bin/pgveil"]
CMD ["serve"]
