"""``pip install audio-maas``, then ``audio-maas serve --model DIR`` outside the repository: the
package built as a wheel and installed in a fresh virtual environment serves a model directory
copied elsewhere, from another working directory, and ``predict`` reads its response. The fresh
environment borrows the dependencies this one installed as a plain path (not a site directory, so
our editable install of the checkout is not seen): downloading TensorFlow and KServe again would
test the registry, not the package."""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
from pathlib import Path

from tests.conftest import BUNDLED_MODEL, REPO, free_port_pair, wait_ready


def test_a_wheel_installed_elsewhere_serves_a_model_directory(tmp_path: Path, fsdd_dir: Path) -> None:
    source = tmp_path / "source"  # setuptools builds in the source tree: a copy keeps the checkout clean
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "audio_maas", source / "audio_maas", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("audio_maas-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    venv_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    (venv_site / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    elsewhere = tmp_path / "elsewhere"
    model_dir = elsewhere / "my-digits"
    shutil.copytree(BUNDLED_MODEL, model_dir)
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    imported = subprocess.run(
        [str(python), "-c", "import audio_maas.transformer.model, audio_maas; print(audio_maas.__file__)"],
        cwd=elsewhere, env=environment, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert Path(imported.strip()).is_relative_to(venv_site)  # the wheel's, not the checkout's

    http_port, predictor_port = free_port_pair(), free_port_pair()
    serve = [str(venv / "bin" / "audio-maas"), "serve", "--model", str(model_dir)]
    serve += ["--http-port", str(http_port), "--predictor-port", str(predictor_port)]
    process = subprocess.Popen(serve, cwd=elsewhere, env={**environment, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        wait_ready(f"http://127.0.0.1:{http_port}/v2/models/my-digits/ready", process=process, timeout_s=120)
        recording = fsdd_dir / "recordings" / "7_theo_0.wav"
        predicted = subprocess.run(
            [str(venv / "bin" / "audio-maas"), "predict", "--url", f"http://127.0.0.1:{http_port}",
             "--model", "my-digits", str(recording)],
            cwd=elsewhere, env=environment, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr
        assert predicted.stdout.startswith(f"{recording}: 7 ")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
