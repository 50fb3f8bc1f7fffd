"""The simulator process cleans up after itself: the temporary directory it makes for PayPal's test CA
(a private key among its files) goes when the process is stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import start_simulator, stop_simulator


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_its_temporary_certificate_directory_goes_with_it(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server == "uvicorn":
        pytest.importorskip("uvicorn")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the process's temporary directories land here
    simulator = start_simulator(server=server)
    try:
        made = list(tmp_path.glob("refundwatch-paypal-certs-*"))
        assert len(made) == 1, made
        assert (made[0] / "ca-key.pem").exists()
    finally:
        stop_simulator(simulator)  # SIGTERM, as a process manager stops it
    assert simulator.process.returncode is not None
    assert not list(tmp_path.glob("refundwatch-paypal-certs-*"))
