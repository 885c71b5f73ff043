"""Webhooks: where a job's end is announced (`notify_url`) and what status records of it.

The operator sends one signed POST per terminal state (Standard Webhooks: `webhook-id`,
`webhook-timestamp`, `webhook-signature`; `roboaug.operator.webhooks`). This module holds what
the request, the project and the status say about it, so the CRD, the gateway and the operator
agree: the URL's rules (checked where a request is validated: the gateway's 422 and the CRD
pattern, again by the operator before each delivery, where the chart's http exceptions and the
resolved addresses are known) and the delivery record in `status.webhook`.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import datetime
from enum import Enum
from typing import Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

NOTIFY_URL_MAX = 2048
NOTIFY_URL_PATTERN = r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$"
"""The CRD's pattern for notify_url (the apiserver's coarse check; `check_notify_url` words each rule)."""

# Cloud metadata endpoints by name; their addresses are link-local (169.254.169.254, fd00:ec2::254)
# and refused as such.
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal"})
MAX_ATTEMPTS_RECORDED = 10
"""status.webhook.attempts keeps the latest this many (the count of all is `attempt` of the last)."""


def forbidden_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Optional[str]:
    """Why the operator must never connect to `ip` for a webhook, or None.

    Link-local covers the cloud metadata services (169.254.169.254, AWS's fd00:ec2::254 is
    unique-local and listed explicitly); unspecified and multicast addresses are no receivers."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip == ipaddress.ip_address("fd00:ec2::254"):
        return "a link-local or cloud metadata address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a unicast address"
    return None


def check_notify_url(url: str, field: str = "notify_url") -> str:
    """The rules every notify_url obeys, whoever submits it; the error names `field` and the rule.

    https or http (http only for hosts the deployment allows: the operator checks that, with
    the chart's `webhooks.allowHttpHosts`), a host, no credentials (`user:pass@` would be stored
    in the CR and its status for anyone who may read jobs), at most NOTIFY_URL_MAX characters,
    no address the operator must not reach (link-local / metadata, unspecified, multicast)."""
    if len(url) > NOTIFY_URL_MAX:
        raise ValueError(f"{field}: at most {NOTIFY_URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as e:
        raise ValueError(f"{field}: not a valid URL ({e})") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"{field}: must be an https:// URL (got scheme {parts.scheme!r})")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise ValueError(f"{field}: must not contain credentials (user:password@); sign with the webhook "
                         "secret instead")
    if any(c.isspace() for c in url):
        raise ValueError(f"{field}: must not contain whitespace")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError(f"{field}: has no host")
    if port == 0:
        raise ValueError(f"{field}: port 0 is not a port")
    if host.lower() in METADATA_HOSTS:
        raise ValueError(f"{field}: {host!r} is a cloud metadata service, which the operator never calls")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:  # the resolver's legacy IPv4 spellings too: 2852039166, 0xa9.0xfe.0xa9.0xfe, 169.254.43518
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return url
    why = forbidden_address(ip)
    if why:
        raise ValueError(f"{field}: {host} is {why}, which the operator never calls")
    return url


def event_type(state: str) -> str:
    """The payload's `type` for a job that ended in `state` (completed, failed, cancelled)."""
    return f"augmentation_job.{state}"


class DeliveryState(str, Enum):
    retrying = "retrying"      # an attempt failed; `next_retry_at` says when the next one goes
    delivered = "delivered"    # a 2xx answer: done
    abandoned = "abandoned"    # out of attempts, 410 Gone, or a URL/secret that cannot work: done


class WebhookAttempt(BaseModel):
    """One POST (or the reason none could be made)."""

    model_config = ConfigDict(use_enum_values=True)
    attempt: int = Field(ge=1, description="1 for the first POST of this delivery.")
    time: datetime = Field(description="When the attempt was made (UTC).")
    http_status: Optional[int] = Field(None, ge=100, le=599, description="The receiver's HTTP status, if it answered.")
    error: Optional[str] = Field(None, max_length=500, description="Why the attempt failed, when it did not get a 2xx.")
    next_retry_at: Optional[datetime] = Field(None, description="When the next attempt goes; unset when none will.")


class WebhookDelivery(BaseModel):
    """`status.webhook`: the announcement of the job's terminal state to its notify_url."""

    model_config = ConfigDict(use_enum_values=True)
    id: str = Field(max_length=128, description="The webhook-id header: the same for every attempt of this "
                                                "delivery (stable per job and state), so receivers can dedupe.")
    type: str = Field(max_length=64, description="The payload's type, e.g. augmentation_job.completed.")
    state: DeliveryState = Field(description="retrying, delivered or abandoned.")
    attempts: list[WebhookAttempt] = Field(
        default_factory=list, max_length=MAX_ATTEMPTS_RECORDED,
        description=f"The latest {MAX_ATTEMPTS_RECORDED} attempts, oldest first.")
