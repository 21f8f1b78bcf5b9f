"""The drivers' exception tree.

`MeterError` is the root; every error names the meter (`address`) and, where it applies, the
data item (`item`). Two branches keep apart who is at fault:

- the peer sent something wrong or nothing: `FrameError` (garbage, wrong length, bad terminator),
  `ChecksumError`, `MeterTimeout`, `MeterRefused` (an error reply, with its decoded bits;
  `MeterUnauthorised` when the bits say the password, its level or the operator code is wrong),
  `RelayNotConfirmed` (the read-back state differs from what was commanded);
- the caller misused a driver: `DriverUsageError` (bad address, unknown item or block, a radio
  configuration that breaks the rules), and `UnsupportedOperation` (an operation this meter, as
  configured, cannot do: a relay command to a Modbus model with no relay map).
"""

from __future__ import annotations


class MeterError(Exception):
    """Root of every driver error."""

    def __init__(self, message: str, *, address: str | None = None, item: str | None = None):
        who = f"meter {address}" if address else "bus"
        what = f" ({item})" if item else ""
        super().__init__(f"{who}{what}: {message}")
        self.address = address
        self.item = item


class PeerError(MeterError):
    """The meter or the line misbehaved."""


class FrameError(PeerError):
    """Bytes that do not form a valid frame (length, start/end marker, layout)."""


class ChecksumError(FrameError):
    """A complete frame whose checksum does not match."""


class MeterTimeout(PeerError):
    """No complete reply within the protocol's time."""


class ChannelBusy(MeterTimeout):
    """LoRa listen-before-talk found the channel busy through every bounded backoff."""


class PortError(MeterError):
    """The serial port itself failed: missing, busy, unplugged adapter, no permission."""


class RadioFault(MeterError):
    """The radio hardware misbehaved: no chip on SPI, TxDone never raised, SPI not enabled."""


class MeterRefused(PeerError):
    """The meter answered with an error reply; `reasons` are the decoded error bits."""

    def __init__(
        self,
        reasons: tuple[str, ...],
        *,
        code: int,
        address: str | None = None,
        item: str | None = None,
    ) -> None:
        super().__init__(
            f"refused: {', '.join(reasons) or 'unspecified'} (0x{code:02X})",
            address=address,
            item=item,
        )
        self.reasons = reasons
        self.code = code


class MeterUnauthorised(MeterRefused):
    """The meter refused the credentials (DL/T 645 error bit 2: password, level or operator
    code wrong, or a level too low for this item). Retrying cannot help: the configuration must
    change."""


class RelayNotConfirmed(PeerError):
    """A relay command was acknowledged but the read-back state is not the commanded one."""


class DriverUsageError(MeterError, ValueError):
    """The caller asked for something the driver cannot do (bad address, unknown item)."""


class UnsupportedOperation(DriverUsageError):
    """The meter, as configured, cannot do this (no relay map for its model): refused before
    any byte is sent, because guessing a register would command something unknown."""
