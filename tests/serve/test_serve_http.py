"""`blocks serve` as users run it: a subprocess on a loopback port, real HTTP (httpx).

Answers equal `blocks predict` on the same rows (CSV with categories and missing cells, rows
of numbers, PNG files as base64 and as uploads); malformed requests get a 4xx naming the field
and the server keeps serving; 16 concurrent clients get what they would get alone."""

from __future__ import annotations

import base64
import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from serve_support import running_server

from blocks.cli import main

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytestmark = pytest.mark.multiprocess


def cli_predict(run: Path, inputs: Path, capsys) -> tuple[list[str], list[list[str]]]:
    capsys.readouterr()
    assert main(["predict", str(run), str(inputs)]) == 0
    header, *rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    return header, rows


def as_table(predictions: list[dict], header: list[str]) -> list[list[str]]:
    """Server answers in `blocks predict`'s columns (one softmax head): label, then p/<name>,
    each probability written as the CLI writes a float32 (so equal text is an equal float32)."""
    from blocks.run.tables import text_of

    names = [h.removeprefix("p/") for h in header[1:]]
    return [[p["label"], *(text_of(np.float32(p["probabilities"][n])) for n in names)]
            for p in predictions]


def wine_rows(path: Path) -> list[dict]:
    """A CSV's rows as JSON objects: numbers, category names, null for a missing cell."""
    missing = {"", "NA", "nan"}
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return [{name: None if cell in missing else cell if name == "alcohol_level" else float(cell)
             for name, cell in zip(header, row, strict=True)} for row in rows]


@pytest.fixture(scope="module")
def wine_server(wine_run, tmp_path_factory):
    _, run = wine_run
    with running_server(run, tmp_path_factory.mktemp("log") / "wine.log") as url:
        yield url


@pytest.fixture(scope="module")
def digits_server(digits_run, tmp_path_factory):
    with running_server(digits_run, tmp_path_factory.mktemp("log") / "digits.log") as url:
        yield url


def test_tabular_answers_equal_blocks_predict(wine_run, wine_server, capsys):
    folder, run = wine_run
    header, expected = cli_predict(run, folder / "features.csv", capsys)
    rows = wine_rows(folder / "features.csv")
    assert any(None in row.values() for row in rows)  # missing cells are imputed by the model
    response = httpx.post(wine_server + "/predict", json={"rows": rows}, timeout=30)
    assert response.status_code == 200, response.text
    assert as_table(response.json()["predictions"], header) == expected
    assert {row[0] for row in expected} <= {"barbera", "barolo", "grignolino"}
    schema = httpx.get(wine_server + "/schema").json()
    assert schema["features"][0] == {"name": "alcohol_level", "type": "category",
                                     "categories": ["high", "low", "mid"], "nullable": True}


def test_rows_of_numbers_answer_as_blocks_predict_on_an_npz(digits_run, digits_server, tmp_path,
                                                            capsys):
    from sklearn.datasets import load_digits

    x = load_digits().data[:40].astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=x)
    header, expected = cli_predict(digits_run, tmp_path / "rows.npz", capsys)
    response = httpx.post(digits_server + "/predict", json={"rows": x.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    assert as_table(response.json()["predictions"], header) == expected


@pytest.mark.slow
def test_png_files_as_base64_and_as_uploads_answer_as_blocks_predict(png_run, tmp_path, capsys):
    folder, run = png_run
    header, expected = cli_predict(run, folder / "pics" / "c1", capsys)
    files = sorted((folder / "pics" / "c1").glob("*.png"))
    with running_server(run, tmp_path / "png.log") as url:
        rows = [{"image": base64.b64encode(f.read_bytes()).decode()} for f in files]
        rows[0]["image"] = "data:image/png;base64," + rows[0]["image"]
        response = httpx.post(url + "/predict", json={"rows": rows}, timeout=30)
        assert response.status_code == 200, response.text
        assert as_table(response.json()["predictions"], header) == expected
        uploads = [("image", (f.name, f.read_bytes(), "image/png")) for f in files]
        response = httpx.post(url + "/predict", files=uploads, timeout=30)
        assert response.status_code == 200, response.text
        assert as_table(response.json()["predictions"], header) == expected
        bad = [
            ({"rows": [{"image": "not base64!"}]}, "field 'image'", "base64"),
            ({"rows": [{"image": base64.b64encode(b"GIF89a nonsense").decode()}]}, "field 'image'",
             "not a readable image"),
            ({"rows": [{"picture": rows[1]["image"]}]}, "field 'picture'", "not a feature"),
        ]
        for body, field, words in bad:
            response = httpx.post(url + "/predict", json=body, timeout=30)
            assert response.status_code == 422 and field in response.text and words in response.text
        response = httpx.post(url + "/predict", files=[("photo", ("a.png", b"x", "image/png"))])
        assert response.status_code == 422 and "field 'photo'" in response.text
        assert httpx.get(url + "/schema").json()["kind"] == "image"


def _chunks(size: int):
    yield b'{"rows": ['
    for _ in range(size // 65536):
        yield b" " * 65536
    yield b"]}"


def test_malformed_requests_get_4xx_naming_the_field_and_the_server_keeps_serving(
        wine_run, wine_server):
    folder, _ = wine_run
    good = wine_rows(folder / "features.csv")[0]
    good_row = {k: (v if v is not None else (0.5 if k != "alcohol_level" else "low"))
                for k, v in good.items()}
    json_type = {"Content-Type": "application/json"}

    def row(**changes) -> bytes:
        return json.dumps({"rows": [good_row, {**good_row, **changes}]}).encode()

    cases = [  # (body, headers, status, words the answer must hold)
        (b'{"rows": [', json_type, 422, "not valid JSON"),
        (b'{"rows": [\xff]}', json_type, 422, "not valid JSON"),
        (b"[1, 2]", json_type, 422, "object"),
        (b'{"rows": 5}', json_type, 422, "field 'rows'"),
        (b'{"rows": []}', json_type, 422, "field 'rows': List should have at least 1 item,"),
        (json.dumps({"rows": [good_row] * 1025}).encode(), json_type, 422, "at most 1024"),
        (json.dumps({"rows": [good_row], "extra": 1}).encode(), json_type, 422, "field 'extra'"),
        (json.dumps({"rows": [{k: v for k, v in good_row.items() if k != "hue"}]}).encode(),
         json_type, 422, "row 0: missing field 'hue'"),
        (row(colour=1), json_type, 422, "field 'colour'"),
        (row(alcohol_level="very high"), json_type, 422, "row 1, field 'alcohol_level'"),
        (row(alcohol_level=2), json_type, 422, "row 1, field 'alcohol_level'"),
        (row(hue="0.5"), json_type, 422, "row 1, field 'hue': Input should be a valid number"),
        (row(hue=True), json_type, 422, "row 1, field 'hue'"),
        (row(hue=[1, 2]), json_type, 422, "row 1, field 'hue'"),
        (row(hue={"a": {"b": []}}), json_type, 422, "row 1, field 'hue'"),
        (row(hue=1e39), json_type, 422, "row 1, field 'hue'"),
        (row().replace(b'"hue": 0.', b'"hue": NaN, "x": 0.'), json_type, 422, "field 'hue'"),
        (row().replace(b'"hue": 0.', b'"hue": -Infinity, "x": 0.'), json_type, 422, "field 'hue'"),
        (b'{"rows": [' + b"[" * 5000 + b"]" * 5000 + b"]}", json_type, 422, "not valid JSON"),
        (json.dumps({"rows": [[1, 2, 3]]}).encode(), json_type, 422, "row 0"),
        (row(), {"Content-Type": "text/plain"}, 415, "Content-Type 'text/plain'"),
        (row(), {"Content-Type": "multipart/form-data; boundary=x"}, 415, "JSON rows"),
        (b"{}" + b" " * (9 << 20), json_type, 413, "--max-request-bytes"),
    ]
    assert len(cases) >= 20
    with httpx.Client(base_url=wine_server, timeout=30) as client:
        for body, headers, status, words in cases:
            response = client.post("/predict", content=body, headers=headers)
            assert response.status_code == status, (body[:80], response.text[:300])
            detail = response.json()["detail"]
            assert isinstance(detail, list) and detail[0]["loc"], detail
            assert any(words in d["msg"] for d in detail), (words, detail)
        # a chunked body (no Content-Length) is cut off at the limit too
        response = client.post("/predict", content=_chunks(9 << 20), headers=json_type)
        assert response.status_code == 413
        response = client.post("/predict", json={"rows": [good_row]})
        assert response.status_code == 200 and "label" in response.json()["predictions"][0]
        assert client.get("/health").json()["status"] == "ok"


def test_rows_of_the_wrong_length_or_type_name_the_row(digits_server):
    cases = [([[0.0] * 63], "row 0", "at least 64 items"), ([[0.0] * 65], "row 0", "at most 64"),
             ([[0.0] * 64, ["a"] * 64], "row 1, value 0", "valid number"),
             ([[0.0] * 63 + [1e39]], "row 0, value 63", "float32"),
             ([{"pixel": 1}], "row 0", "valid array")]
    with httpx.Client(base_url=digits_server, timeout=30) as client:
        for rows, where, words in cases:
            response = client.post("/predict", json={"rows": rows})
            assert response.status_code == 422
            assert any(where in d["msg"] and words in d["msg"] for d in response.json()["detail"])


def test_16_concurrent_clients_get_the_answers_they_get_alone(digits_server):
    from sklearn.datasets import load_digits

    x = load_digits().data[:64]
    requests = [x[[i, i + 16, i + 32]].tolist() for i in range(16)]
    with httpx.Client(base_url=digits_server, timeout=60) as client:
        alone = [client.post("/predict", json={"rows": r}).json()["predictions"] for r in requests]
        before = client.get("/health").json()

    def one_client(i: int) -> list[list[dict]]:
        with httpx.Client(base_url=digits_server, timeout=60) as client:
            return [client.post("/predict", json={"rows": requests[i]}).json()["predictions"]
                    for _ in range(8)]

    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(one_client, range(16)))
    for i, answers in enumerate(together):
        for answer in answers:
            assert [a["label"] for a in answer] == [a["label"] for a in alone[i]]
            for got, want in zip(answer, alone[i], strict=True):
                assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    after = httpx.get(digits_server + "/health").json()
    assert after["rows"] - before["rows"] == 16 * 8 * 3
    assert after["batches"] - before["batches"] < 16 * 8  # requests shared forward passes


@pytest.mark.slow
def test_two_workers_answer_alike(digits_run, digits_server, tmp_path):
    from sklearn.datasets import load_digits

    rows = load_digits().data[:8].tolist()
    expected = httpx.post(digits_server + "/predict", json={"rows": rows}).json()
    with running_server(digits_run, tmp_path / "workers.log", "--workers", "2") as url:
        for _ in range(4):
            assert httpx.post(url + "/predict", json={"rows": rows}, timeout=30).json() == expected
