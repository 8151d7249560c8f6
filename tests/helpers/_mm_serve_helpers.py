"""Shared pieces of the web-app tests: a tiny run with SynthAV clips, odd files, a free port, a network guard."""

import ipaddress
import os
import shutil
import socket
from pathlib import Path

import av
import numpy as np
import pytest
from _mm_cue_fakes import write_run


def make_run_and_clips(root: Path, clips: int = 2) -> tuple[Path, list[Path]]:
    """A randomly initialised tiny FSLF run (32 px, 4 classes) and ``clips`` one-second SynthAV RAVDESS clips."""
    from multimae_der.data.synthav import synthesize

    synthesize(root / "synth", "ravdess", actors=1, clips_per_actor=clips, duration=1.0, size=32, seed=1)
    run = write_run(root / "run", fusion="fslf")
    return run, sorted((root / "synth").rglob("*.mp4"))


def video_without_audio(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def audio_only(path: Path) -> Path:
    """A WAV file: one second of a 440 Hz tone."""
    import soundfile as sf

    t = np.arange(16000) / 16000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_local(host: object) -> bool:
    if isinstance(host, str) and host in ("localhost", ""):
        return True
    try:
        addr = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return addr.is_loopback or addr.is_unspecified


class NetworkGuard:
    """Records (and refuses) every attempt of this process to reach a non-local address, from any thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        real_connect, real_connect_ex, real_getaddrinfo = (socket.socket.connect, socket.socket.connect_ex,
                                                           socket.getaddrinfo)
        guard = self

        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
                guard.attempts.append(f"connect {address}")
                raise OSError("network access blocked by the test")
            return real_connect(sock, address)

        def connect_ex(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
                guard.attempts.append(f"connect_ex {address}")
                return 111
            return real_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            if host is not None and not _is_local(host if isinstance(host, str) else host.decode()):
                guard.attempts.append(f"resolve {host}")
                raise socket.gaierror("name resolution blocked by the test")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def require_gradio() -> None:
    """Gradio-dependent tests skip only outside CI when gradio is missing; under CI they fail."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip("gradio is not installed (pip install 'multimae-der[serve]')")


def browser_available() -> str | None:
    """Why the browser test cannot run, or None when chromium and playwright are both installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if shutil.which("chromium") is None:
        return "the chromium browser is not installed (apt-get install -y chromium)"
    return None
