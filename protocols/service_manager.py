"""systemd's service notification (``sd_notify``): one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``.

A ``Type=notify`` unit is started once its main process says ``READY=1``, not once it has been forked: so
``systemctl start hotline-eval-agi`` returns when the FastAGI port takes calls (after the speech models have
loaded), and a call that Asterisk sends right after an upgrade is not refused. ``STATUS=`` is the line
``systemctl status`` shows; ``STOPPING=1`` says the drain has begun.

Written here rather than taken from a library: the protocol is one ``sendto`` (systemd's sd_notify(3)), and
the libraries that wrap it (python-systemd, sdnotify) either need libsystemd's headers to build or are
unmaintained. The address is ``$NOTIFY_SOCKET``, read by the command line (the environment is read at the
edge); without one (not under systemd, or another ``Type=``) nothing is sent.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def notify_message(**fields: str) -> bytes:
    """The datagram for ``fields`` (``READY="1"``, ``STATUS="…"``): one ``KEY=value`` line each, in UTF-8."""
    for key, value in fields.items():
        if "\n" in value:
            raise ValueError(f"{key}: a notification value is one line")
    return "".join(f"{key}={value}\n" for key, value in fields.items()).encode("utf-8")


def notify(address: str | None, **fields: str) -> bool:
    """Send ``fields`` to the service manager at ``address``; whether there was one to tell (and it took the
    datagram).

    An ``@`` address is in the abstract namespace (a leading NUL byte). A failure to send is not an error of
    ours to raise: the service runs the same. It is logged, since systemd would otherwise say only that the start
    timed out."""
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
            sender.sendto(notify_message(**fields), target)
    except OSError as exc:
        log.warning("could not tell the service manager at %s %s: %s", address, ", ".join(fields), exc)
        return False
    return True
