"""``tickler healthcheck``: ask the running server's ``/healthz``, for a container's HEALTHCHECK.

It asks at the address and port the settings resolve, the way ``tickler run`` binds them
(``TICKLER_HTTP_PORT_FILE`` before ``TICKLER_HTTP_PORT``, ``TICKLER_HTTP_HOST``), so that a
health check cannot disagree with the server about where it listens. It runs every 30 s in
every container: it imports the standard library's HTTP client and nothing of the server stack.
"""

from __future__ import annotations

import ipaddress
import sys

import click

from scheduler.cli.context import Context

#: Docker reads 0 as healthy and 1 as unhealthy (2 is reserved), whatever went wrong.
EXIT_UNHEALTHY = 1


def probe_host(host: str) -> str:
    """Return the address to reach a server bound to ``host``, bracketed for a URL if IPv6.

    A wildcard bind (``0.0.0.0``, ``::``, empty) is reached on loopback of its family; a
    specific address or a name is reached there, since a server bound to ``10.0.0.5`` does not
    answer on ``127.0.0.1``.
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name: resolved as the server resolved it
    if address.version == 6:
        return "[::1]" if address.is_unspecified else f"[{address}]"
    return str(address)


@click.command()
@click.option(
    "--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for an answer."
)
@click.pass_obj
def healthcheck(obj: Context, timeout: float) -> None:
    """Ask the server's /healthz: exit 0 if it answers 200, else 1 with the reason on stderr."""
    import urllib.error
    import urllib.request

    settings = obj.settings
    if settings.http_port == 0:
        click.echo("unhealthy: TICKLER_HTTP_PORT is 0 (any free port): nothing to ask", err=True)
        sys.exit(EXIT_UNHEALTHY)
    url = f"http://{probe_host(settings.http_host)}:{settings.http_port}/healthz"
    # No proxy: a container's HTTP_PROXY must not carry a probe of the container itself.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, unresolvable name
        reason = getattr(exc, "reason", None) or exc
        click.echo(f"unhealthy: {url}: {reason}", err=True)
        sys.exit(EXIT_UNHEALTHY)
    if status != 200:
        click.echo(f"unhealthy: {url} answered {status}", err=True)
        sys.exit(EXIT_UNHEALTHY)
    click.echo(f"healthy: {url}")
