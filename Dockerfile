# nport-twisted: a MOXA NPort compatible serial device server.
# Build: docker build -t nport-twisted .
# Run:   docker run --device /dev/ttyUSB0 --group-add dialout -v nport-data:/data \
#            --network host nport-twisted --ports /dev/ttyUSB0 --config /data/nport.ini
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*

COPY . /src
RUN pip install --no-cache-dir /src \
    && rm -rf /src \
    # Regenerate Twisted's plugin cache now: at run time the non-root user cannot write it.
    && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
    # Let the non-root user bind the NPort ports (950+, 966+, 80, 23) without root.
    && setcap cap_net_bind_service=+ep "$(readlink -f "$(command -v python3)")"

RUN useradd --system --uid 1000 --gid dialout --home-dir /data --shell /usr/sbin/nologin nport \
    && mkdir -p /data && chown nport:dialout /data

USER nport
WORKDIR /data
VOLUME ["/data"]
# Real COM data/command (ports 1-16), TCP Server, DSCI discovery, TCP 4900.
EXPOSE 950-965 966-981 4001-4016 4800/udp 4900

ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "--logfile=-", "nport"]
CMD ["--ports", "/dev/ttyUSB0", "--config", "/data/nport.ini"]
