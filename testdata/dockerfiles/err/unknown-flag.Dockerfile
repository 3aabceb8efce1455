# syntax=docker/dockerfile:1
FROM alpine:3.20 AS build

RUN apk add --no-cache make
WORKDIR /src

COPY --chmodd=755 app /usr/local/bin/
