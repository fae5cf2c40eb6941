"""The seed's example activities, used by ``workflows/dummy_workflow.json``."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from activities.base import BaseActivity


class DoSomethingActivity(BaseActivity):
    """Waits ``config.sleep_s`` seconds (default 0) and succeeds, echoing the input."""

    def do_activity(self) -> str:
        time.sleep(float(self.config.get("sleep_s", 0)))
        self.logger.info("doing something with %s", dict(self.input_data))
        self.output = {"input_keys": sorted(self.input_data)}
        return self.SUCCEEDED


class DoAnotherThingActivity(BaseActivity):
    """GETs ``config.url`` (timeout ``config.timeout_s``, default 10).

    2xx succeeds; 4xx is a permanent failure (retrying will not help); a 5xx answer
    or a network error is temporary, so it is retried.
    """

    def do_activity(self) -> str:
        url = self.config.get("url")
        if not url:
            self.error = "config.url is not set"
            return self.PERMANENT_FAILURE
        timeout_s = float(self.config.get("timeout_s", 10))
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                self.output = {"url": url, "status": response.status}
                return self.SUCCEEDED
        except urllib.error.HTTPError as e:
            self.output = {"url": url, "status": e.code}
            self.error = f"GET {url} answered {e.code} {e.reason}"
            if 400 <= e.code < 500:
                return self.PERMANENT_FAILURE
            return self.TEMPORARY_FAILURE
        except (urllib.error.URLError, OSError) as e:
            self.error = f"GET {url} failed: {e}"
            return self.TEMPORARY_FAILURE
