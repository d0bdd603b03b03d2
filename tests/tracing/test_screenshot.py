"""The README's picture of one order's trace: a real run exported to a real Jaeger, drawn from Jaeger's query API
(``orderflow_dev.waterfall``: the Go-built Jaeger has no UI assets) and photographed by headless Chromium.

Not part of ``make test`` (it needs Debian's chromium, which ``make screenshot`` installs); CI runs ``make
screenshot`` after ``make test``. It rewrites ``docs/order-trace.png``: review the picture and commit it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orderflow_dev import waterfall
from orderflow_dev.jaeger import Jaeger
from orderflow_dev.stack import Stack
from tests.tracing.test_jaeger import LINE, SHIPPED, has_all, traced_env, wait_for_trace

pytestmark = [pytest.mark.kafka, pytest.mark.jaeger, pytest.mark.screenshot]

PICTURE = Path(__file__).resolve().parents[2] / "docs" / "order-trace.png"
WIDTH = 1400


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_screenshot_of_one_order_as_one_trace(
    make_stack: Callable[..., Stack], jaeger: Jaeger, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: run `make screenshot` (it installs Debian's chromium)"
    stack = make_stack(env=traced_env(jaeger))
    stack.put_stock("SKU-1", 5)
    stack.put_account("alice", 5000)
    order_id = stack.place_order("alice", [LINE])["order_id"]
    stack.wait_terminal([order_id])
    trace = wait_for_trace(jaeger, order_id, has_all(SHIPPED))

    page = tmp_path / "trace.html"
    page.write_text(waterfall.render(trace.body, title=f"Order {order_id}: one trace, four services"))
    height = 80 + 22 * len(trace.spans) + 20
    PICTURE.parent.mkdir(exist_ok=True)
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={PICTURE}", f"--window-size={WIDTH},{height}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert png_size(PICTURE) == (WIDTH, height)
    services = {p["serviceName"] for p in trace.body["processes"].values()}
    assert {"orderflow-order", "orderflow-inventory", "orderflow-billing", "orderflow-shipping"} <= services
