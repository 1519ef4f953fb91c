"""`blocks serve` in-process (FastAPI's TestClient): what the schema and OpenAPI document say,
answers per head equal to `predict_run`, the batcher, the CLI's own refusals. Fast: models are
built, not trained."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import blocks
from blocks.cli import main
from blocks.run.predicting import Predictions, predict_run

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from blocks.serve.app import create_app  # noqa: E402
from blocks.serve.batching import MicroBatcher  # noqa: E402
from blocks.serve.inputs import Limits  # noqa: E402
from blocks.serve.server import exposure_warning  # noqa: E402

SPEC = {
    "name": "shop",
    "input": {"shape": [5]},  # size, weight + 3 one-hot colours
    "preprocess": {"raw_shape": [3], "features": ["size", "colour", "weight in kg"],
                   "categories": {"colour": ["blue", "green", "red"]}, "impute": "mean"},
    "backbone": [{"type": "linear", "out_features": 8}, "relu"],
    "heads": {"kind": {"type": "softmax", "classes": 2, "labels": ["shoe", "sock"]},
              "tags": {"type": "sigmoid", "classes": 2, "labels": ["sale", "new"]}},
}
ROWS = [{"size": 42.0, "colour": "red", "weight in kg": 0.5},
        {"size": 38, "colour": "blue", "weight in kg": None},
        {"size": None, "colour": None, "weight in kg": 1.25}]
RAW = [[42.0, 2, 0.5], [38.0, 0, np.nan], [np.nan, np.nan, 1.25]]


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory) -> Path:
    model = blocks.build(blocks.ModelSpec.model_validate(SPEC), seed=0)
    return blocks.save(model, tmp_path_factory.mktemp("shop") / "run")


@pytest.fixture(scope="module")
def client(shop_run):
    with TestClient(create_app(shop_run)) as client:
        yield client


def test_answers_per_head_equal_predict_run_on_the_same_raw_rows(client, shop_run):
    response = client.post("/predict", json={"rows": ROWS})
    assert response.status_code == 200
    got = response.json()["predictions"]
    expected = predict_run(shop_run, np.asarray(RAW, dtype=np.float32))
    for i, row in enumerate(got):
        assert set(row) == {"kind", "tags"}
        kind = expected.labels["kind"][i].item()
        assert row["kind"]["label"] == ["shoe", "sock"][kind]
        assert list(row["kind"]["probabilities"]) == ["shoe", "sock"]
        assert list(row["kind"]["probabilities"].values()) == expected.probabilities["kind"][i].tolist()
        assert row["tags"]["labels"] == dict(zip(["sale", "new"], expected.labels["tags"][i].tolist(),
                                                 strict=True))
        assert list(row["tags"]["probabilities"].values()) == expected.probabilities["tags"][i].tolist()


def test_schema_and_openapi_are_the_runs_inputs_and_labels(client):
    schema = client.get("/schema").json()
    assert schema["kind"] == "tabular" and schema["raw_shape"] == [3]
    assert schema["features"] == [
        {"name": "size", "type": "number", "nullable": True},
        {"name": "colour", "type": "category", "categories": ["blue", "green", "red"],
         "nullable": True},
        {"name": "weight in kg", "type": "number", "nullable": True}]
    assert schema["heads"] == {"kind": {"kind": "softmax", "labels": ["shoe", "sock"]},
                               "tags": {"kind": "sigmoid", "labels": ["sale", "new"],
                                        "threshold": 0.5}}
    assert client.post("/predict", json=schema["example"]).status_code == 200
    document = client.get("/openapi.json").json()
    assert document["info"]["title"] == "blocks serve: shop"
    components = document["components"]["schemas"]
    row = components["Row"]
    assert row["required"] == ["size", "colour", "weight in kg"]
    assert row["additionalProperties"] is False
    assert {"enum": ["blue", "green", "red"], "type": "string"} in row["properties"]["colour"]["anyOf"]
    rows = components["PredictRequest"]["properties"]["rows"]
    assert (rows["minItems"], rows["maxItems"]) == (1, 1024)
    answer = components["PredictResponse"]["properties"]["predictions"]["items"]
    assert answer["properties"]["kind"]["properties"]["label"] == {"enum": ["shoe", "sock"]}
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert client.get("/docs").status_code == 200
    jsonschema = pytest.importorskip("jsonschema")
    published = {"$ref": "#/components/schemas/PredictRequest", "components": document["components"]}
    jsonschema.validate(schema["example"], published)
    jsonschema.validate({"rows": ROWS}, published)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rows": [{**ROWS[0], "colour": "purple"}]}, published)
    answer = client.post("/predict", json={"rows": ROWS}).json()
    jsonschema.validate(answer, {"$ref": "#/components/schemas/PredictResponse",
                                 "components": document["components"]})


def test_bad_rows_are_422_naming_row_and_field(client):
    cases = [
        ({"rows": [ROWS[0], {**ROWS[0], "colour": "purple"}]}, 1, "colour", "'blue', 'green' or 'red'"),
        ({"rows": [{**ROWS[0], "size": "42"}]}, 0, "size", "valid number"),
        ({"rows": [{**ROWS[0], "size": True}]}, 0, "size", "valid number"),
        ({"rows": [{**ROWS[0], "weight in kg": 1e39}]}, 0, "weight in kg", "1e+39 is beyond the model's float32"),
        ({"rows": [{**ROWS[0], "weigth in kg": 1}]}, 0, "weigth in kg", "did you mean 'weight in kg'"),
        ({"rows": [{"size": 1}]}, 0, "'colour', 'weight in kg'", "missing fields"),
    ]
    for body, row, field, words in cases:
        response = client.post("/predict", json=body)
        assert response.status_code == 422, body
        detail = response.json()["detail"][0]
        assert detail["loc"][:3] == ["body", "rows", row]
        assert f"row {row}" in detail["msg"] and field in detail["msg"] and words in detail["msg"]


def test_an_unexpected_error_is_a_plain_500_without_a_traceback(shop_run, monkeypatch):
    app = create_app(shop_run)
    batcher = app.state.batcher

    def broken(x):
        raise RuntimeError("secret internal state /home/user/.ssh")

    monkeypatch.setattr(batcher, "predict", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", json={"rows": ROWS[:1]})
        assert response.status_code == 500
        assert response.json()["detail"][0]["type"] == "internal_error"
        assert "secret" not in response.text and "Traceback" not in response.text
        assert client.get("/health").status_code == 200


def test_the_batcher_gives_each_request_its_own_rows_in_one_forward():
    seen: list[int] = []

    def predict(x: np.ndarray) -> Predictions:
        seen.append(len(x))
        ids = torch.as_tensor(x[:, 0]).long()
        return Predictions({"output": ids}, {"output": torch.as_tensor(x)}, {"output": ["a", "b"]},
                           {"output": "softmax"})

    async def scenario() -> list[list[int]]:
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=1.0)
        await batcher.start()
        try:
            async def client(i: int) -> list[int]:
                with batcher.arriving():
                    await asyncio.sleep(0.01 * (i % 3))  # reading the body takes a while
                    x = np.full((i % 4 + 1, 2), float(i), dtype=np.float32)
                got = await batcher.submit(x)
                return got.labels["output"].tolist()

            return await asyncio.gather(*(client(i) for i in range(16)))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert answers == [[i] * (i % 4 + 1) for i in range(16)]
    assert sum(seen) == sum(i % 4 + 1 for i in range(16))
    assert len(seen) == 1  # every request was being read when the first was queued: one batch


def test_a_lone_request_does_not_wait_for_max_wait():
    def predict(x):
        return Predictions({"output": torch.zeros(len(x), dtype=torch.long)},
                           {"output": torch.ones(len(x), 1)}, {"output": ["a"]}, {"output": "softmax"})

    async def scenario() -> float:
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=5.0)
        await batcher.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(np.zeros((1, 1), dtype=np.float32))
        elapsed = loop.time() - start
        await batcher.stop()
        return elapsed

    assert asyncio.run(scenario()) < 1.0


def test_import_blocks_does_not_import_fastapi():
    code = "import blocks, blocks.serve, sys; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_missing_serve_extra_exits_2_naming_it(shop_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", str(shop_run)]) == 2
    assert "pip install 'blocks[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "words"), [
    (["--port", "0"], "--port must be 1..65535"), (["--max-batch", "0"], "--max-batch must be"),
    (["--workers", "0"], "--workers must be"), (["--max-wait-ms", "-1"], "--max-wait-ms must be"),
    (["--device", "tpu"], "device")])
def test_bad_options_exit_2(shop_run, capsys, flags, words):
    assert main(["serve", str(shop_run), *flags]) == 2
    assert words in capsys.readouterr().err


def test_a_port_in_use_and_a_missing_run_exit_2(shop_run, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(shop_run), "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "not a blocks run folder" in capsys.readouterr().err


def test_binding_beyond_loopback_warns(shop_run, monkeypatch, capsys):
    import blocks.serve.server as server

    calls = []
    monkeypatch.setattr(server, "serve", lambda *a, **k: calls.append(k["host"]))
    assert main(["serve", str(shop_run), "--host", "0.0.0.0"]) == 0
    assert calls == ["0.0.0.0"]
    assert "warning: serving on 0.0.0.0" in capsys.readouterr().err
    assert exposure_warning("127.0.0.1") is exposure_warning("::1") is exposure_warning("localhost") is None
    assert exposure_warning("192.168.1.5") is not None


def test_limits_reach_the_schema(shop_run):
    with TestClient(create_app(shop_run, limits=Limits(max_rows=2, max_batch=8))) as client:
        assert client.get("/schema").json()["limits"]["max_rows"] == 2
        response = client.post("/predict", json={"rows": ROWS})
        assert response.status_code == 422
        assert "at most 2 items" in response.json()["detail"][0]["msg"]


def test_a_row_that_makes_the_output_non_finite_is_a_422_naming_it():
    model = blocks.build(blocks.ModelSpec(name="big", input={"shape": [2]},
                                          backbone=[{"type": "linear", "out_features": 2}],
                                          head={"type": "softmax", "classes": 2}), seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(10.0)
    with TestClient(create_app(model)) as client:
        response = client.post("/predict", json={"rows": [[1, 2], [3e38, 3e38], [0, 1]]})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["type"] == "non_finite_output" and detail["loc"] == ["body", "rows", 1]
        assert detail["msg"].startswith("row 1: the model's output is not finite")
        assert client.post("/predict", json={"rows": [[1, 2]]}).status_code == 200


def test_one_bad_request_in_a_batch_fails_alone():
    from blocks.core.errors import Problem, SpecError

    def predict(x: np.ndarray) -> Predictions:
        if (x < 0).any():
            raise SpecError(Problem("", "the model's output for input row 1 is not finite",
                                    "non_finite_output"))
        return Predictions({"output": torch.as_tensor(x[:, 0]).long()}, {"output": torch.as_tensor(x)},
                           {"output": ["a"]}, {"output": "softmax"})

    async def scenario() -> list:
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=1.0)
        await batcher.start()

        async def client(i: int):
            with batcher.arriving():
                await asyncio.sleep(0.01)
            try:
                return (await batcher.submit(np.full((2, 1), -1.0 if i == 3 else i, np.float32))
                        ).labels["output"].tolist()
            except SpecError as err:
                return err.first.type

        try:
            return await asyncio.gather(*(client(i) for i in range(6)))
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [[0, 0], [1, 1], [2, 2], "non_finite_output", [4, 4], [5, 5]]


def test_a_huge_unknown_key_is_not_echoed_back(client):
    key = "k" * 100_000
    response = client.post("/predict", json={"rows": [{**ROWS[0], key: 1}]})
    assert response.status_code == 422 and len(response.content) < 2_000


def test_images_as_base64_and_uploads_answer_as_predict_on_the_files(tmp_path):
    import base64

    PIL = pytest.importorskip("PIL.Image")
    spec = blocks.ModelSpec.model_validate({
        "name": "pics", "input": {"shape": [1, 12, 12]},
        "preprocess": {"raw_shape": [1, 12, 12], "images": "crop", "channel_mean": [0.4],
                       "channel_std": [0.2]},
        "backbone": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}, "relu", "flatten"],
        "head": {"type": "softmax", "classes": 3, "labels": ["a", "b", "c"]}})
    run = blocks.save(blocks.build(spec, seed=0), tmp_path / "run")
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 255, (20 + i, 17), dtype=np.uint8)
        PIL.fromarray(pixels).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    expected = predict_run(run, tmp_path).probabilities["output"].tolist()  # the folder, sorted
    with TestClient(create_app(run)) as client:
        rows = [{"image": base64.b64encode(f.read_bytes()).decode()} for f in files]
        got = client.post("/predict", json={"rows": rows}).json()["predictions"]
        assert [list(p["probabilities"].values()) for p in got] == expected
        uploads = [("image", (f.name, f.read_bytes(), "image/png")) for f in files]
        got = client.post("/predict", files=uploads).json()["predictions"]
        assert [list(p["probabilities"].values()) for p in got] == expected
        big = tmp_path / "big.png"
        PIL.new("L", (6000, 5000)).save(big)
        response = client.post("/predict", files=[("image", ("big.png", big.read_bytes(), "image/png"))])
        assert response.status_code == 422 and "6000 x 5000 pixels" in response.text
        response = client.post("/predict", json={"rows": [{"image": "%%%"}]})
        assert response.status_code == 422 and "row 0, field 'image'" in response.text
        assert client.get("/schema").json()["kind"] == "image"
        content = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}


def test_a_slow_forward_runs_off_the_event_loop_and_a_quick_one_on_it(monkeypatch):
    import threading
    import time

    from blocks.serve import batching

    # "quick" is a forward under INLINE_S (1 ms): on a loaded machine building the quick
    # Predictions can take longer, so the bar sits between the quick and the slow forward here
    monkeypatch.setattr(batching, "INLINE_S", 0.1)

    threads: list[str] = []

    def predict(x):
        threads.append(threading.current_thread().name)
        if x[0, 0] > 0:
            time.sleep(0.3)
        return Predictions({"output": torch.zeros(len(x), dtype=torch.long)},
                           {"output": torch.ones(len(x), 1)}, {"output": ["a"]}, {"output": "softmax"})

    async def scenario() -> tuple[float, float]:
        batcher = MicroBatcher(predict, max_batch=64, max_wait_s=0.0)
        await batcher.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        slow = asyncio.ensure_future(batcher.submit(np.ones((1, 1), dtype=np.float32)))
        await asyncio.sleep(0.05)  # the loop keeps running while the slow forward does
        ticked = loop.time() - start
        await slow
        await batcher.submit(np.ones((1, 1), dtype=np.float32))   # slow last time: a thread
        await batcher.submit(np.zeros((1, 1), dtype=np.float32))  # quick now: inline
        await batcher.submit(np.zeros((1, 1), dtype=np.float32))
        await batcher.stop()
        return ticked, loop.time() - start

    ticked, total = asyncio.run(scenario())
    assert ticked < 0.2 <= total
    assert threads[0].startswith("blocks-serve-forward") and threads[1].startswith("blocks-serve")
    assert threads[3] == threading.main_thread().name


def test_token_ids_are_bounded_by_the_embedding_and_an_index_error_is_a_422():
    spec = blocks.ModelSpec.model_validate({
        "name": "tokens", "input": {"shape": [4], "dtype": "int64"},
        "backbone": [{"type": "embedding", "num_embeddings": 10, "embedding_dim": 3}, "flatten"],
        "head": {"type": "sigmoid", "classes": 1, "labels": ["spam"]}})
    model = blocks.build(spec, seed=0)
    with TestClient(create_app(model)) as client:
        assert client.get("/schema").json()["vocabulary"] == 10
        answer = client.post("/predict", json={"rows": [[1, 2, 3, 4]]}).json()["predictions"][0]
        assert answer["probabilities"]["spam"] == model.predict_proba([[1, 2, 3, 4]])[0, 0].item()
        assert set(answer["labels"]) == {"spam"}
        response = client.post("/predict", json={"rows": [[1, 2, 3, 10], [1, -1, 0, 0], [1.5] * 4]})
        messages = [d["msg"] for d in response.json()["detail"]]
        assert response.status_code == 422
        assert "row 0, value 3: Input should be less than 10" in messages
        assert "row 1, value 1: Input should be greater than or equal to 0" in messages
        assert "row 2, value 0: Input should be a valid integer" in messages

    def predict(x):  # an embedding further in, which the schema cannot see
        raise IndexError("index out of range in self")

    async def scenario():
        batcher = MicroBatcher(predict, max_batch=8, max_wait_s=0.0)
        await batcher.start()
        try:
            await batcher.submit(np.zeros((1, 4), dtype=np.int64))
        except blocks.SpecError as err:
            return err.first.type
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == "out_of_range"
