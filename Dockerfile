# Static, non-root images of cmd/bridge and cmd/worker.
#
#   docker build -t sagabridge:dev .
#   docker run --rm sagabridge:dev -config /etc/sagabridge/bridge.yaml           # the bridge
#   docker run --rm --entrypoint /usr/local/bin/worker sagabridge:dev -kafka-brokers ...
#
# The machine this project is developed on has no container engine, so this
# file is not built by make test; see docs/OPERATIONS.md.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/bridge ./cmd/worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bridge /out/worker /usr/local/bin/
# Numeric (distroless's nonroot): the manifests' runAsNonRoot can check only
# a numeric user.
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/bridge"]
