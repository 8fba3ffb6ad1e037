# snapmove image: one static binary. Its entrypoint installs the binary into /target, which is
# how Velero's helm chart loads plugins (initContainers mount the plugins volume at /target).
# The mover Deployment and the worker pods run the same image with `snapmove mover ...`.
#
# hack/image.sh builds the same layout without a Docker engine for the local stack.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY main.go ./
COPY internal ./internal
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/snapmove .

FROM scratch
# CA bundle for object stores reached over TLS; nothing else: no shell, no package manager.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/snapmove /snapmove
# Non-root by default. Only the worker pods run as root (set in their pod spec), because
# they must read every file of the volume and restore ownership.
USER 65532:65532
ENTRYPOINT ["/snapmove", "install", "/target"]
