# smartcar2mqtt container image: a static Go binary on scratch, non-root.
#
#   docker build -t smartcar2mqtt .
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#     --build-arg VERSION=1.2.3 --build-arg COMMIT=$(git rev-parse --short HEAD) .
#
# The build stage always runs on the build machine (cross-compiling with Go is
# cheap; no emulation needed). GO_IMAGE may name any image with a Go toolchain and
# /bin/sh; .ci/container passes a local stand-in because CI cannot pull.
ARG GO_IMAGE=golang:1.26-alpine

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src

# Modules first: this layer stays cached while only the source changes.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN set -eu; \
    case "${TARGETVARIANT:-}" in \
      v5) GOARM=5 ;; \
      v6) GOARM=6 ;; \
      v7) GOARM=7 ;; \
      *)  GOARM= ;; \
    esac; \
    if [ -n "$GOARM" ]; then export GOARM; else unset GOARM; fi; \
    CGO_ENABLED=0 GOOS="${TARGETOS:-}" GOARCH="${TARGETARCH:-}" \
      go build -trimpath \
        -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
        -o /out/smartcar2mqtt .

# The final image's whole filesystem besides the binary and the CA bundle: a user
# for uid/gid 65532, /data owned by it (Docker seeds a new named volume with this
# ownership), and a /tmp.
RUN set -eu; \
    mkdir -p /rootfs/etc /rootfs/data /rootfs/tmp; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' > /rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group; \
    chown 65532:65532 /rootfs/data; \
    chmod 0700 /rootfs/data; \
    chmod 1777 /rootfs/tmp

FROM scratch
ARG VERSION=dev
ARG COMMIT=unknown
COPY --from=build /rootfs/ /
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/smartcar2mqtt /smartcar2mqtt
LABEL org.opencontainers.image.title="smartcar2mqtt" \
      org.opencontainers.image.description="Smartcar charge port door as a Home Assistant cover over MQTT" \
      org.opencontainers.image.source="https://github.com/smartcar2mqtt/smartcar2mqtt" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
USER 65532:65532
ENV DATA_DIR=/data
VOLUME /data
# 1883 embedded broker, 8883 its TLS listener (with BROKER_TLS_CERT/KEY), 8080 /healthz and /metrics.
EXPOSE 1883 8883 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s CMD ["/smartcar2mqtt","healthcheck"]
ENTRYPOINT ["/smartcar2mqtt"]
CMD ["run"]
