"""Twilio Elastic SIP Trunking network facts, as data (no behaviour here).

Source: Twilio, "IP Addresses for Elastic SIP Trunking Services",
https://www.twilio.com/docs/sip-trunking/ip-addresses (section "Regional signaling IP gateways": allow
*all* of them, a trunk fails over between edges), as quoted in public sources in 2026, among them
Google Cloud's "BYOC IP allow list" for CCAI Platform
(https://cloud.google.com/contact-center/ccai-platform/docs/byoc-ip-allow-list), which lists the same
eight /30 blocks and the one media block.

Twilio changes these lists from time to time. They are a starting point: check Twilio's current page
before relying on them, and put what it says in ``inbound_cidrs`` of your ``[providers.twilio]``.
"""

from __future__ import annotations

# Where Twilio's SIP signalling (INVITE, BYE, OPTIONS, ...) comes from, one /30 per edge location.
# Use these as ``inbound_cidrs`` of a twilio provider: an INVITE from anywhere else is refused.
TWILIO_SIGNALLING_CIDRS: tuple[str, ...] = (
    "54.172.60.0/30",  # North America, Virginia (ashburn, us1)
    "54.244.51.0/30",  # North America, Oregon (umatilla, us2)
    "54.171.127.192/30",  # Europe, Ireland (dublin, ie1)
    "35.156.191.128/30",  # Europe, Frankfurt (frankfurt, de1)
    "177.71.206.192/30",  # South America, São Paulo (sao-paulo, br1)
    "54.169.127.128/30",  # Asia Pacific, Singapore (singapore, sg1)
    "54.65.63.192/30",  # Asia Pacific, Tokyo (tokyo, jp1)
    "54.252.254.64/30",  # Asia Pacific, Sydney (sydney, au1)
)

# Where Twilio's RTP comes from and goes to, every edge (since the 2023/2024 media migration Twilio's
# voice media uses this single global block, UDP ports 10000-60000). This is *media*, not signalling:
# do not put it in ``inbound_cidrs`` (it would let any Twilio media host send INVITEs); open it in a
# firewall in front of the bridge's ``rtp_ports``. Twilio said at the time that signalling addresses
# were not changing.
TWILIO_MEDIA_CIDRS: tuple[str, ...] = ("168.86.128.0/18",)
TWILIO_MEDIA_PORTS: tuple[int, int] = (10000, 60000)

# Twilio's signalling ports: 5060 for UDP and TCP, 5061 for TLS (Secure Trunking).
TWILIO_SIGNALLING_PORT = 5060
TWILIO_TLS_PORT = 5061

# A trunk's Termination SIP URI is "<name>.pstn.twilio.com" (localized: "<name>.pstn.<edge>.twilio.com");
# outbound INVITEs must carry that host in the Request-URI so Twilio can tell which trunk they are for.
TWILIO_TERMINATION_HOST_SUFFIX = ".pstn.twilio.com"

__all__ = [
    "TWILIO_MEDIA_CIDRS",
    "TWILIO_MEDIA_PORTS",
    "TWILIO_SIGNALLING_CIDRS",
    "TWILIO_SIGNALLING_PORT",
    "TWILIO_TERMINATION_HOST_SUFFIX",
    "TWILIO_TLS_PORT",
]
