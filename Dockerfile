# nport-twisted: a MOXA NPort compatible serial device server.
#
# Build:  docker build -t nport-twisted .
#         (another base: --build-arg BASE=debian:bookworm-slim, whose Python is then installed
#          with apt-get; any base with python3 >= 3.10 and its venv module works.  Behind a
#          TLS-intercepting proxy: --build-arg PIP_CERT=<its CA's path during the build>, e.g.
#          podman build -v /etc/ssl/certs:/host-certs:ro --build-arg
#          PIP_CERT=/host-certs/ca-certificates.crt, or a copy in this directory as /src/ca.pem)
# Run (host network: MOXA's tools find the box by broadcast and see its real address; Docker
# grants an added capability only to root, so root it is, with every other capability dropped):
#   docker run -d --name nport --network host --user 0 --cap-drop ALL --cap-add NET_BIND_SERVICE \
#       --device /dev/ttyUSB0 --group-add dialout -v nport-data:/data nport-twisted \
#       --ports /dev/ttyUSB0
# (Podman gives it to the image's own non-root user: drop --user 0 there.)
# Every option, bridge networking, device replug, Kubernetes: docs/deployment.md.
#
# No file capabilities (setcap) on the Python binary: with them the binary cannot even be
# executed under --cap-drop ALL or Kubernetes' drop: [ALL].  Ports below 1024 come from
# NET_BIND_SERVICE granted at run time (--cap-add / AmbientCapabilities) or from
# net.ipv4.ip_unprivileged_port_start=0 in the container's own network namespace.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# Optional CA bundle for pip (a path visible during the build); empty: pip's own.
ARG PIP_CERT=

COPY . /src
# A venv: Debian's own python3 refuses system-wide pip installs (PEP 668); python:*-slim is fine
# either way.  The plugin cache is written now: at run time the user cannot write it.
RUN set -eu; \
    [ -n "${PIP_CERT}" ] || unset PIP_CERT; \
    # A Debian/Ubuntu base without Python (debian:bookworm-slim, a debootstrap): install it.
    if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        command -v apt-get >/dev/null || { echo "BASE needs python3 >= 3.10 with venv" >&2; exit 1; }; \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/nport; \
    /opt/nport/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    rm -rf /src; \
    /opt/nport/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"; \
    # Image layers keep whole seconds: a cache as old as the plugin files counts as stale
    # (and unwritable at run time, logged at every start).  Date it after them.
    touch -d "@$(( $(date +%s) + 2 ))" /opt/nport/lib/python3*/site-packages/twisted/plugins/dropin.cache; \
    /opt/nport/bin/nport-twisted --version

# A fixed uid/gid that a volume or hostPath can be chowned to; group dialout (20 on Debian)
# as a default for devices (pass the device's real group with --group-add).  /data is group
# writable (setgid dialout) so that root without DAC_OVERRIDE (--user 0 --cap-drop ALL, the
# host-network recipe for Docker and Kubernetes, docs/deployment.md) can write it too.
RUN set -eu; \
    getent group dialout >/dev/null || groupadd --system --gid 20 dialout; \
    useradd --system --uid 1000 --gid dialout --home-dir /data --shell /usr/sbin/nologin nport; \
    mkdir -p /data /run/lock; chown nport:dialout /data; chmod 2775 /data; chmod 1777 /run/lock

ENV PATH=/opt/nport/bin:$PATH PYTHONUNBUFFERED=1
USER nport
WORKDIR /data
VOLUME ["/data"]

# Every port a mode or service can use, before --port-offset:
#   80 web console / JSON API, 443 HTTPS (--https-port 443), 23 telnet console,
#   950-981 Real COM data/command of ports 1-16, 982-1013 of ports 17-32,
#   4001-4032 TCP Server / RFC 2217 (and Reverse Telnet, Ethernet Modem), 4001-4032/udp UDP mode,
#   4800/udp discovery (DSCI), 4900 TCP 4900.
EXPOSE 80 443 23 950-1013 4001-4032 4001-4032/udp 4800/udp 4900

# The runner: twist in the foreground, readable text logs on stdout (--log-format json for JSON).
ENTRYPOINT ["nport-twisted", "--config", "/data/nport.ini"]
CMD ["--ports", "/dev/ttyUSB0"]
