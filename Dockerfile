FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /autoinvite ./cmd/autoinvite

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /autoinvite /autoinvite
COPY examples/autoinvite.yaml /etc/autoinvite/autoinvite.yaml
EXPOSE 8080
ENTRYPOINT ["/autoinvite"]
CMD ["serve", "--config", "/etc/autoinvite/autoinvite.yaml"]
