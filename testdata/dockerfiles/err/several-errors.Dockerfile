FROM alpine
COPPY . /src
RUN --mnt=type=cache,target=/root/.cache make
ENV PATH
CMD ["make", 1]
HEALTHCHECK --interval=5 CMD true
ONBUILD FROM scratch
