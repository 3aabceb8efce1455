FROM alpine
RUN <<EOF
echo hello
EOR
