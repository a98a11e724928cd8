"""The app under load and through its real front door: `python app.py` as a user starts it listens on loopback
only, answers 50 concurrent gradio_client requests of mixed sizes within a global timeout with bounded memory, and
every file of the bad-input corpus uploaded to it is translated or refused with a message naming it."""
import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from broken import make_broken, make_edge_cases, make_more_broken, make_unusual_but_valid
from test_app import app

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("load_benchmark", ROOT / "benchmarks" / "load.py")
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)

REQUESTS, SIZES, TIMEOUT_S = 50, (16, 48, 128, 256, 384, 512), 180
MAX_GROWTH_MB = 400  # measured about 140 MB on this machine's 2 CPUs (docs/reliability.md)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app serving a tiny model (ResNet-1, ngf 8); yields (url, port, server process id)."""
    base = tmp_path_factory.mktemp("load")
    with load.serve(load.make_checkpoints(base / "checkpoints", ngf=8, n_blocks=1), base / "server") as served:
        yield served


def test_50_concurrent_requests_all_succeed_with_bounded_memory(server, tmp_path):
    url, port, pid = server
    images = load.make_images(tmp_path / "images", REQUESTS, SIZES)
    result = load.run_load(url, images, pid, timeout=TIMEOUT_S, downloads=tmp_path / "downloads")
    result["listening_on"] = sorted(load.listening_addresses(port))
    (tmp_path / "load.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    assert result["failures"] == {} and result["succeeded"] == REQUESTS  # outputs keep each input's size
    assert result["latency_s"]["p100"] < TIMEOUT_S
    assert result["listening_on"] == ["127.0.0.1"]  # the default host: loopback only
    assert result["server_rss_mb"]["after"] - result["server_rss_mb"]["before"] < MAX_GROWTH_MB, result


def test_every_corpus_upload_is_translated_or_refused_by_name(server, tmp_path):
    """Through the live server, where gradio handles the upload before the app's own code sees it."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    folder = tmp_path / "corpus"
    broken = {**make_broken(folder), **make_more_broken(folder)}
    valid = {name: image.size for name, image in make_unusual_but_valid(folder).items()} | {"exif.jpg": (20, 40)}
    valid |= make_edge_cases(folder)
    client = Client(server[0], verbose=False, analytics_enabled=False, download_files=str(tmp_path / "downloads"))

    def send(name: str):
        return client.predict(load.MODEL, "a2b", handle_file(str(folder / name)), 1.0, False, False,
                              api_name="/translate_style")

    for name, size in valid.items():
        with Image.open(send(name)[0]) as out:
            assert out.size == size, name
    for name, word in broken.items():
        with pytest.raises(AppError) as info:
            send(name)
        message = str(info.value)
        assert message.startswith(name) and {"bomb-81mp.png": "megapixels"}.get(name, word) in message, message


def test_the_app_queues_requests_with_a_concurrency_limit():
    calls = {}

    class Demo:
        def queue(self, **kwargs):
            calls["queue"] = kwargs

        def launch(self, **kwargs):
            calls["launch"] = kwargs

    app.launch(Demo(), "127.0.0.1", 7860)
    assert calls["queue"] == {"default_concurrency_limit": app.CONCURRENCY, "max_size": app.QUEUE_SIZE}
    assert 1 <= app.CONCURRENCY < REQUESTS <= app.QUEUE_SIZE
    assert calls["launch"]["server_name"] == "127.0.0.1" and calls["launch"]["max_file_size"] == app.MAX_FILE_SIZE
