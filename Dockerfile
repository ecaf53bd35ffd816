# syntax=docker/dockerfile:1
#
# elevate in a small, non-root image:
#
#   docker build -t elevate:0.1.0 .
#   docker run --rm -p 8180:8180 elevate:0.1.0            # the shipped policies, no grants
#
# The runtime image is distroless (glibc, CA certificates, no shell, no package manager),
# so it has no HEALTHCHECK: there is no shell or HTTP client inside to run one, and
# elevate has no health-check subcommand. Probe GET /healthz and /readyz from outside
# (Kubernetes probes, your load balancer, `curl` on the host).
#
# The builder and the runtime must be the same Debian release (bookworm = debian12),
# or the binary may need a newer glibc than the runtime has. For trixie use
# rust:1.95-trixie with gcr.io/distroless/cc-debian13.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit); the binary is
# copied out of the cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin elevate \
 && install -D -m 0755 target/release/elevate /out/elevate \
 && install -d /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/elevate /usr/local/bin/elevate
# The shipped policies, schema, example entities and gateway routes, laid out as the
# Kubernetes ConfigMap is (deploy/kubernetes): one directory, the policies being its
# *.cedar files. Mount your own over /etc/elevate (a directory, so edits are
# hot-reloaded).
COPY policies/*.cedar schema/elevate.cedarschema deploy/local/entities.json \
     deploy/local/routes.toml /etc/elevate/
# The workflow's state directory (--workflow /var/lib/elevate), owned by the runtime
# user so that a fresh named volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/state/ /var/lib/elevate/
USER 65532:65532
ENV NO_COLOR=1 RUST_LOG=info
EXPOSE 8180
ENTRYPOINT ["elevate"]
# All interfaces of the container's own network namespace: publish the port, or in a
# pod pass --listen=127.0.0.1:8180 to keep the sidecar to its pod (deploy/kubernetes).
# With inputs named, only those are loaded: add --grants-url=http://WORKFLOW:8180/v1/grants
# for grants, or --workflow=/var/lib/elevate --tokens=FILE to run the workflow.
CMD ["serve", "--listen=0.0.0.0:8180", "--policies=/etc/elevate", "--schema=/etc/elevate/elevate.cedarschema", "--entities=/etc/elevate/entities.json", "--routes=/etc/elevate/routes.toml"]
