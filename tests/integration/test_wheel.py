"""What gets deployed works: the wheel carries the templates, the static files and the vendored htmx,
and a server installed from it alone (no source checkout) serves the live dashboard.

The wheel is built and installed offline: ``pip wheel --no-build-isolation`` (hatchling is a test
dependency) and ``pip install --no-deps --no-index`` into a fresh virtualenv whose dependencies come
from this project's virtualenv through a ``.pth`` line (a plain path: the editable install's own
``.pth`` there is not processed, so ``refundwatch`` is imported from the wheel).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx2
import pytest

from stack import PYTHON, Proc, Stack, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]
REPO = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with refundwatch installed from a freshly built wheel; returns its bin/."""
    where = tmp_path_factory.mktemp("wheel")
    _run(PYTHON, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", where, REPO)
    (wheel,) = where.glob("refundwatch-*.whl")
    venv = where / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    (purelib / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(PYTHON, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    found = _run(python, "-c", "import refundwatch; print(refundwatch.__file__)", cwd=where).stdout
    assert found.startswith(str(purelib)), f"refundwatch imported from {found}, not from the wheel"
    return venv / "bin"


def _serve(stack: Stack, bin_dir: Path, port: str, log: Path) -> Proc:
    proc = Proc("wheel-web", [], stack.env, log)
    with log.open("ab") as handle:
        proc.popen = subprocess.Popen(
            [str(bin_dir / "refundwatch"), "serve", "--port", port],
            env=stack.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log.parent,  # nowhere near the source checkout
            start_new_session=True,
        )
    return proc


def test_the_installed_wheel_serves_the_live_dashboard(stack: Stack, installed: Path) -> None:
    # The installed server takes the stack's port: the identity provider redirects there.
    stack.procs["web"].stop()
    port = stack.web_url.rsplit(":", 1)[1]
    stack.procs["web"] = web = _serve(stack, installed, port, stack.workdir / "wheel-web.log")
    wait_http(f"{stack.web_url}/healthz", web)

    client = stack.sign_in("alice-viewer")
    try:
        page = client.get("/")
        assert page.status_code == 200, page.text[:300]
        assert "/static/vendor/htmx.min.js" in page.text
        assert "/static/vendor/htmx-ext-sse.js" in page.text
        for asset in ("/static/vendor/htmx.min.js", "/static/vendor/htmx-ext-sse.js", "/static/css/app.css"):
            served = client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 500, asset
        assert "htmx" in client.get("/static/vendor/htmx.min.js").text
        # Live: the stream the dashboard subscribes to answers with server-sent events.
        with client.stream("GET", "/dashboard/stream?range=15m", timeout=httpx2.Timeout(30, read=30)) as live:
            assert live.status_code == 200
            assert live.headers["content-type"].startswith("text/event-stream")
            assert next(live.iter_lines()) is not None
    finally:
        client.close()


def test_serve_refuses_to_start_without_htmx(stack: Stack, installed: Path) -> None:
    packaged = Path(
        _run(installed / "python", "-c", "import refundwatch; print(refundwatch.__file__)").stdout.strip()
    ).parent
    vendored = packaged / "static" / "vendor" / "htmx.min.js"
    kept = vendored.read_bytes()
    vendored.unlink()
    try:
        result = subprocess.run(
            [str(installed / "refundwatch"), "serve", "--port", "1"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=stack.workdir,
            check=False,
        )
    finally:
        vendored.write_bytes(kept)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "htmx.min.js is missing" in lines[0]
    assert "pip wheel ." in lines[0]
