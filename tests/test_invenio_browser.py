"""A headless Chromium page uploads a file in parts straight to SeaweedFS through presigned URLs,
the way browser uploaders (Uppy and the like) do: the app hands out the URLs and completes the
upload, the bytes go from the page to S3. The bucket's CORS rules are set by
``unistore invenio cors`` (with ``ExposeHeaders: ETag``, without which the page cannot read the
part ETags). Debian's ``chromium`` package, driven by playwright."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("invenio_files_rest")

import requests  # noqa: E402

from tests.servers.invenio_app import ByteCounter, serve_in_thread  # noqa: E402
from tests.servers.invenio_site import Site, make_site  # noqa: E402

CHROMIUM = "/usr/lib/chromium/chromium"
MiB = 1024 * 1024

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>upload</title></head><body>
<script>
function pattern(size) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) % 251;
  return data;
}
async function upload(bucket, key, size, partSize) {
  const data = pattern(size);
  const base = `/multipart/${bucket}/files`;
  let r = await fetch(`${base}/?multipart=True`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({key: key, size: size, type: "application/octet-stream", partSize: partSize})});
  if (r.status !== 201) return {error: "start " + r.status + " " + await r.text()};
  const up = await r.json();
  const numbers = [...Array(up.parts).keys()].map(i => i + 1);
  r = await fetch(`${base}/${key}/${up.uploadId}/${numbers.join(",")}/presigned`);
  const urls = (await r.json()).presignedUrls;
  const parts = await Promise.all(numbers.map(async n => {
    const body = data.slice((n - 1) * up.partSize, n * up.partSize);
    const res = await fetch(urls[n], {method: "PUT", body: body});
    return {PartNumber: n, ETag: res.headers.get("ETag"), status: res.status};
  }));
  if (parts.some(p => p.status !== 200 || !p.ETag)) return {error: "parts", parts: parts};
  r = await fetch(`${base}/${key}/${up.uploadId}/complete`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({parts: parts.map(p => ({PartNumber: p.PartNumber, ETag: p.ETag}))})});
  return {status: r.status, body: await r.json(), parts: parts.length};
}
</script></body></html>
"""


def pattern(size: int) -> bytes:
    return bytes((i * 31 + 7) % 251 for i in range(size))


@pytest.fixture(scope="module")
def browser_site(tmp_path_factory: pytest.TempPathFactory, seaweedfs: Any) -> Iterator[tuple[Site, str, ByteCounter]]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    site = make_site(tmp_path_factory.mktemp("invenio-browser"), seaweedfs)
    site.app.add_url_rule("/upload", "upload_page", lambda: PAGE)
    counter = ByteCounter(site.app.wsgi_app)
    site.app.wsgi_app = counter  # type: ignore[method-assign]
    with serve_in_thread(site.app) as base:
        yield site, base, counter


def test_cors_command(browser_site: tuple[Site, str, ByteCounter], seaweedfs: Any) -> None:
    site, base, _ = browser_site
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "unistore.cli",
            "invenio",
            "cors",
            "--url",
            seaweedfs.url(site.bucket),
            "--origin",
            base,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rules = seaweedfs.client().get_bucket_cors(Bucket=site.bucket)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == [base] and "ETag" in rules[0]["ExposeHeaders"]
    assert "PUT" in rules[0]["AllowedMethods"]
    # what a browser asks before a cross-origin PUT
    pre = requests.options(
        f"{seaweedfs.endpoint}/{site.bucket}/files/x",
        headers={"Origin": base, "Access-Control-Request-Method": "PUT"},
        timeout=30,
    )
    assert pre.status_code == 200 and pre.headers.get("Access-Control-Allow-Origin") in (base, "*")


def test_chromium_uploads_parts_straight_to_s3(browser_site: tuple[Site, str, ByteCounter]) -> None:
    from playwright.sync_api import sync_playwright

    site, base, counter = browser_site
    bucket = site.new_bucket("s3")
    size, part = 11 * MiB + 3, 5 * MiB
    before = counter.received
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            page = browser.new_page()
            page.goto(base + "/upload")
            result = page.evaluate("([b, k, s, p]) => upload(b, k, s, p)", [bucket, "from-browser.bin", size, part])
        finally:
            browser.close()
    assert "error" not in result, result
    assert result["status"] == 200 and result["parts"] == 3
    assert result["body"]["checksum"].startswith("etag:") and result["body"]["checksum"].endswith("-3")
    assert counter.received - before < 64 * 1024  # the app got JSON only, the parts went to S3
    got = requests.get(f"{base}/files/{bucket}/from-browser.bin", timeout=60)
    assert got.status_code == 200 and got.content == pattern(size)
