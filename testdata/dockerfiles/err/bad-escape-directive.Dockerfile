# escape=|
# escape=`
FROM alpine
