"""Exception tree of the media layer (SDP offer/answer and RTP sessions).

MediaError
├── SdpError               an SDP body we cannot use (answer with 488, or 400 if unparseable)
│   ├── NoCommonMediaError nothing in the offer/answer we can accept: answer 488
│   └── MediaAddressNotAllowed the peer's RTP/RTCP address is outside the network policy
├── PortsExhaustedError    no free RTP port pair in the configured range: answer 503
└── MediaSessionStateError an operation the session's state does not allow
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every error raised by afterbeep.telephony.media."""


class SdpError(MediaError, ValueError):
    """An SDP body that is malformed or that we cannot use."""


class NoCommonMediaError(SdpError):
    """The offer (or answer) has no audio stream with a codec we support.

    The SIP layer answers an INVITE that fails this way with 488 Not Acceptable Here.
    """


class MediaAddressNotAllowed(SdpError):
    """The SDP would have us send RTP or RTCP to an address the network policy refuses.

    Carries no detail of the address on purpose (it may end up in a tenant's view)."""

    def __init__(self) -> None:
        super().__init__("media address not allowed")


class PortsExhaustedError(MediaError):
    """No even/odd UDP port pair could be bound inside the configured RTP range."""


class MediaSessionStateError(MediaError):
    """The media session is not in a state that allows this operation (closed, not started)."""
