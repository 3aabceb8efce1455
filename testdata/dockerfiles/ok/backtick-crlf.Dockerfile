# escape=`
FROM mcr.microsoft.com/windows/nanoserver:ltsc2022
COPY c:\src\ `
     d:\dst\
RUN dir c:\ `
    && echo done
