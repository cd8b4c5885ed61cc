# sipbridge: SIP phone calls into a WebRTC voice agent.
#
#   docker build -t sipbridge .
#   docker run --rm --network host \
#     -v /etc/sipbridge:/etc/sipbridge:ro \
#     -e SIPBRIDGE_AGENT=https://agent.example.com/whip \
#     sipbridge serve --config /etc/sipbridge/sipbridge.toml
#
# Run it with host networking: SIP over UDP, a range of RTP ports (rtp_ports, 10000-20000 by default)
# and ICE candidates for the agent all need the host's own addresses. Behind Docker's NAT the SDP and
# Contact would name the container's address; if you must, publish 5060/udp, 5060/tcp, the whole RTP
# range as udp, and set public_ip / media_public_ip to the host's public address (README, Operations).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system sipbridge && useradd --system --gid sipbridge --home-dir /opt/sipbridge sipbridge

WORKDIR /opt/sipbridge
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
# Only the runtime dependencies, at the versions requirements.lock pins.
RUN pip install --constraint requirements.lock . && rm -rf src

USER sipbridge
# SIP (UDP and TCP), SIP over TLS (only with tls_cert_file), the REST API (127.0.0.1 unless api_listen
# says otherwise, and then only with [api] keys), the RTP range.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8090/tcp 10000-20000/udp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/health', timeout=2)"]

ENTRYPOINT ["sipbridge"]
CMD ["serve"]
