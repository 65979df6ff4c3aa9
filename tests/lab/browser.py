"""A real headless browser (Debian's Chromium, driven by Selenium through Debian's
chromedriver) for the web view's tests.

It trusts exactly the lab controller's certificate (its public key pinned with
--ignore-certificate-errors-spki-list: Chromium has no option to add a CA
without an NSS database), uses a throwaway profile and no proxy, and is ended
whatever happened.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ferry.lab.layout import lab_dir

# Selenium is installed apart from the venv (Makefile), after it on the path: the
# venv's own packages win where both have one
sys.path.append(str(Path(sys.prefix) / "browser"))
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

__all__ = ["By", "WebDriverException", "chromium"]


def _spki_pin(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    pin = _spki_pin(lab_dir() / "pki" / "controller-cert.pem")
    with tempfile.TemporaryDirectory(prefix="ferry-chromium-") as profile:
        opts = Options()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--window-size=1200,1300",
                    f"--user-data-dir={profile}",
                    f"--ignore-certificate-errors-spki-list={pin}"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            yield driver
        finally:
            driver.quit()
