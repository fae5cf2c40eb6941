"""The seed's example activities, used by ``workflows/dummy_workflow.json``."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from activities.base import BaseActivity

#: The only URL schemes DoAnotherThingActivity fetches, and follows redirects to.
WEB_SCHEMES = frozenset({"http", "https"})


class DoSomethingActivity(BaseActivity):
    """Waits ``config.sleep_s`` seconds (default 0) and succeeds, echoing the input."""

    def do_activity(self) -> str:
        time.sleep(float(self.config.get("sleep_s", 0)))
        self.logger.info("doing something with %s", dict(self.input_data))
        self.output = {"input_keys": sorted(self.input_data)}
        return self.SUCCEEDED


class DoAnotherThingActivity(BaseActivity):
    """GETs ``config.url`` (timeout ``config.timeout_s``, default 10).

    It fetches whatever URL a definition names, from the worker's network, so it is
    limited: only ``http``/``https`` URLs, redirects only to ``http``/``https``, and no
    loopback, private, link-local or other non-global address (checked on the address
    actually connected to, redirects included) unless ``config.allow_private`` is
    true. The address is checked before anything connects to it, and a refused one
    gives one error whether anything listens there or not. Environment proxies are
    not used. A refused URL is a permanent failure.

    2xx succeeds; 4xx is a permanent failure (retrying will not help); a 5xx answer
    or a network error is temporary, so it is retried.
    """

    def do_activity(self) -> str:
        url = self.config.get("url")
        if not url:
            self.error = "config.url is not set"
            return self.PERMANENT_FAILURE
        scheme = urllib.parse.urlsplit(str(url)).scheme.lower()
        if scheme not in WEB_SCHEMES:
            self.error = f"config.url must be an http:// or https:// URL, not {scheme or 'a relative'!r} ({url})"
            return self.PERMANENT_FAILURE
        timeout_s = float(self.config.get("timeout_s", 10))
        opener = _web_opener(allow_private=bool(self.config.get("allow_private", False)))
        try:
            with opener.open(url, timeout=timeout_s) as response:
                self.output = {"url": url, "status": response.status}
                return self.SUCCEEDED
        except RefusedURL as e:
            self.error = f"GET {url} refused: {e.reason}"
            return self.PERMANENT_FAILURE
        except urllib.error.HTTPError as e:
            self.output = {"url": url, "status": e.code}
            self.error = f"GET {url} answered {e.code} {e.reason}"
            if 400 <= e.code < 500:
                return self.PERMANENT_FAILURE
            return self.TEMPORARY_FAILURE
        except urllib.error.URLError as e:
            if isinstance(e.reason, RefusedAddress):
                self.error = f"GET {url} refused: {e.reason}"
                return self.PERMANENT_FAILURE
            self.error = f"GET {url} failed: {e}"
            return self.TEMPORARY_FAILURE
        except OSError as e:
            self.error = f"GET {url} failed: {e}"
            return self.TEMPORARY_FAILURE


class RefusedURL(urllib.error.URLError):
    """Raised when a redirect leads to a URL whose scheme is not http or https."""


class RefusedAddress(OSError):
    """Raised when a name resolves to a non-global address that was not allowed."""


class _WebRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only. (urllib's own refuses the other schemes
    but ftp with a 3xx ``HTTPError``, which would read as a retryable answer.)"""

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location is not None:
            target = urllib.parse.urljoin(req.full_url, location)
            if urllib.parse.urlsplit(target).scheme.lower() not in WEB_SCHEMES:
                fp.close()
                raise RefusedURL(f"redirect ({code}) to {target!r}: only http and https are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _connect_to_global_address(
    address: tuple[str, int],
    timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]  # http.client passes it
    source_address: tuple[str, int] | None = None,
    **kwargs: Any,
) -> socket.socket:
    """``socket.create_connection``, refusing a name that resolves to a non-global address.

    The name is resolved and every address it has is checked before any connection is
    made, and the connection goes to the address checked, not to the name resolved
    again: a closed internal port answers exactly as an open one does (nothing tells
    them apart), and a name that resolves to a public address when checked and to a
    private one when connecting (DNS rebinding) never reaches the private one. A name
    with any non-global address among its addresses is refused as a whole.
    """
    host, port = address
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global:
            raise RefusedAddress(f"{host} is {ip}, not a public address (set config.allow_private to fetch it)")
    error: OSError | None = None
    for family, type_, proto, _name, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error or OSError(f"{host} has no address")


class _GlobalHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_to_global_address


class _GlobalHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_to_global_address


class _GlobalHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_GlobalHTTPConnection, req)


class _GlobalHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        return self.do_open(_GlobalHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]  # set by HTTPSHandler.__init__, private in typeshed


def _web_opener(*, allow_private: bool) -> urllib.request.OpenerDirector:
    """An opener that speaks http and https only (no file:, ftp:, data:), no proxies."""
    opener = urllib.request.OpenerDirector()
    handlers: list[Any] = [
        urllib.request.HTTPHandler() if allow_private else _GlobalHTTPHandler(),
        urllib.request.HTTPSHandler() if allow_private else _GlobalHTTPSHandler(),
        _WebRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ]
    for handler in handlers:
        opener.add_handler(handler)
    return opener
