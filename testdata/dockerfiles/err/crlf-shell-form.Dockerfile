FROM alpine
RUN echo a \

    b
  SHELL /bin/sh
