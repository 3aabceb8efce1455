# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
ARG BASE=alpine:3.20

FROM golang:${GO_VERSION}-alpine AS Build
WORKDIR /src
COPY --link go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG GO_VERSION
RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app

FROM ${BASE} AS unused
RUN echo never built

FROM ${BASE}
LABEL org.opencontainers.image.title="app" version=${GO_VERSION}
ENV APP_HOME=/app \
    PATH="/app/bin:$PATH"
COPY --from=build --chown=app:app --chmod=755 /out/app /app/bin/app
COPY <<-EOT /etc/motd
	hello from $APP_HOME
	EOT
EXPOSE 8080/tcp 9090
USER app
HEALTHCHECK --interval=30s --timeout=3s CMD ["/app/bin/app", "health"]
ENTRYPOINT ["/app/bin/app"]
CMD ["--help"]
