FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git stays out of the build context (.dockerignore), so Go cannot stamp the
# VCS revision: pass it instead, e.g.
#   docker build --build-arg VERSION=$(git describe --always --dirty) .
# `autoinvite version` and the User-Agent then show it.
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/autoinvite/autoinvite/app.stampedVersion=${VERSION}" \
    -o /autoinvite ./cmd/autoinvite

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /autoinvite /autoinvite
COPY examples/autoinvite.yaml /etc/autoinvite/autoinvite.yaml
ENV AUTOINVITE_CONFIG=/etc/autoinvite/autoinvite.yaml
EXPOSE 8080
# No shell, curl or wget in this image: the binary probes itself (GET /readyz
# on the config's listen address; ready when Redis answers).
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/autoinvite", "healthcheck"]
ENTRYPOINT ["/autoinvite"]
CMD ["serve", "--config", "/etc/autoinvite/autoinvite.yaml"]
