"""The web UI's HTTP API and its gate, over plain HTTP on 127.0.0.1 (httpx), with ``ecaptureq ui`` running."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_cli, start_serve, stop_serve
from ui_support import Ui, make_database, make_demo_database, start_ui, stop_ui

from ecaptureq.decode.bodies import hexdump
from ecaptureq.decode.model import Exchange, HttpMessage
from ecaptureq.protocol.timestamps import detect_timestamp
from ecaptureq.store.export import har_entry
from ecaptureq.web.curl import curl_command
from ecaptureq.web.queries import body_view, connect, exchange_rows_by_id

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 demo events recorded into a database (packets and the exchanges decoded from them)."""
    return make_demo_database(tmp_path_factory.mktemp("ui") / "demo.db", 120)


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_database(tmp_path_factory.mktemp("ui") / "bulk.db", 50)


@pytest.fixture(scope="module")
def ui(db: Path) -> Iterator[Ui]:
    served = start_ui("--db", str(db))
    yield served
    stop_ui(served)


@pytest.fixture(scope="module")
def ui_bulk(bulk: Path) -> Iterator[Ui]:
    served = start_ui("--db", str(bulk))
    yield served
    stop_ui(served)


@pytest.fixture(scope="module")
def ui_token(db: Path) -> Iterator[Ui]:
    served = start_ui("--db", str(db), "--token", TOKEN, "--allow-origin", "http://trusted.example:9000")
    yield served
    stop_ui(served)


@pytest.mark.e2e
def test_banner_says_read_only(ui: Ui, db: Path) -> None:
    assert f"browsing {db} (read-only)" in ui.banner
    assert "?token=" not in ui.url


@pytest.mark.e2e
def test_exchanges_all_and_after_id(ui: Ui, db: Path) -> None:
    body = httpx.get(f"{ui.base}/api/exchanges").json()
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT count(*) FROM exchanges").fetchone()[0]
    assert total > 10
    assert len(body["rows"]) == total
    assert body["columns"][:3] == ["id", "time", "pname"]
    ids = [r[0] for r in body["rows"]]
    assert ids == sorted(ids)
    after = httpx.get(f"{ui.base}/api/exchanges", params={"after_id": ids[4], "limit": 3}).json()
    assert [r[0] for r in after["rows"]] == ids[5:8]


@pytest.mark.e2e
def test_exchanges_by_position_before_an_id_and_counted(ui: Ui, db: Path) -> None:
    # the table's pages: by position (a jump into the table), before an id (the page above one held), and
    # the number of rows matching with the last id among them
    api = f"{ui.base}/api/exchanges"
    ids = [r[0] for r in httpx.get(api).json()["rows"]]
    with sqlite3.connect(db) as conn:
        curl = [r[0] for r in conn.execute("SELECT id FROM exchanges WHERE pname = 'curl' ORDER BY id")]
    assert len(ids) > 10 and len(curl) > 3

    def page(**params: object) -> list[int]:
        answer = httpx.get(api, params=params)
        assert answer.status_code == 200, answer.text
        return [r[0] for r in answer.json()["rows"]]

    assert page(offset=3, limit=4) == ids[3:7]
    assert page(offset=1, limit=2, filter="pname = 'curl'") == curl[1:3]
    assert page(offset=len(ids), limit=5) == []
    assert page(before_id=ids[6], limit=3) == ids[3:6]
    assert page(before_id=curl[3], limit=2, filter="pname = 'curl'") == curl[1:3]
    counted = httpx.get(api, params={"count": 1, "offset": 0, "limit": 2}).json()
    assert (counted["total"], counted["last_id"]) == (len(ids), ids[-1])
    assert [r[0] for r in counted["rows"]] == ids[:2]
    counted = httpx.get(api, params={"count": 1, "limit": 1, "filter": "pname = 'curl'"}).json()
    assert (counted["total"], counted["last_id"]) == (len(curl), curl[-1])
    bad = httpx.get(api, params={"offset": "x1"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "offset must be a whole number, not 'x1'"
    assert page(before_id=-5) == []  # no row before id 0
    bad = httpx.get(f"{ui.base}/api/stream", params={"waiting": "1,2,x"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "waiting must be row ids separated by commas, not '1,2,x'"


@pytest.mark.e2e
def test_a_position_is_found_whatever_gaps_the_ids_have(tmp_path: Path) -> None:
    # Ids 1, 2, 3... give a row's position at once; with rows deleted they do not, and SQLite counts
    path = make_database(tmp_path / "gaps.db", 60)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM exchanges WHERE id BETWEEN 10 AND 19")
    served = start_ui("--db", str(path))
    try:
        answer = httpx.get(f"{served.base}/api/exchanges", params={"offset": 10, "limit": 5, "count": 1})
        assert [r[0] for r in answer.json()["rows"]] == [21, 22, 23, 24, 25]  # 1-9 are positions 0-8
        assert answer.json()["total"] == 50
    finally:
        stop_ui(served)


def test_rows_by_id_reads_every_id_asked(tmp_path: Path) -> None:
    # a live stream keeps up to 2,000 incomplete exchanges to re-read: more than one query's parameters
    path = make_database(tmp_path / "many.db", 2000)
    conn = connect(path)
    try:
        rows = exchange_rows_by_id(conn, range(1, 2001))
        assert [r[0] for r in rows] == list(range(1, 2001))
        not_found = exchange_rows_by_id(conn, range(1, 2001), "status = 404")
        assert [r[0] for r in not_found] == list(range(10, 2001, 10))
    finally:
        conn.close()


@pytest.mark.e2e
def test_exchange_filter_and_bad_filter(ui: Ui, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        expected = [r[0] for r in conn.execute("SELECT id FROM exchanges WHERE pname = 'curl' ORDER BY id")]
    assert expected
    body = httpx.get(f"{ui.base}/api/exchanges", params={"filter": "pname = 'curl'"}).json()
    assert [r[0] for r in body["rows"]] == expected
    bad = httpx.get(f"{ui.base}/api/exchanges", params={"filter": "no_such_column = 1"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid SQL: no such column: no_such_column (in: no_such_column = 1)"
    two = httpx.get(f"{ui.base}/api/exchanges", params={"filter": "1; DELETE FROM exchanges"})
    assert two.status_code == 400


@pytest.mark.e2e
def test_database_is_read_only(ui: Ui, db: Path) -> None:
    written = httpx.get(f"{ui.base}/api/packets", params={"sql": "WITH x AS (SELECT 1) DELETE FROM packets"})
    assert written.status_code == 400
    assert "readonly" in written.json()["error"] or "attempt to write" in written.json()["error"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM packets").fetchone()[0] == 120


@pytest.mark.e2e
def test_packets_two_modes(ui: Ui) -> None:
    cond = httpx.get(f"{ui.base}/api/packets", params={"sql": "index > 100"}).json()
    assert [r[0] for r in cond["rows"]] == list(range(101, 121))
    assert cond["columns"][0] == "index" and "payload_binary" in cond["columns"]
    assert all(r[-1].startswith("x'") for r in cond["rows"])  # blobs shown as hex
    query = "SELECT pname, count(*) AS n FROM packets GROUP BY 1"
    full = httpx.get(f"{ui.base}/api/packets", params={"sql": query})
    assert full.json()["columns"] == ["pname", "n"]
    assert sum(r[1] for r in full.json()["rows"]) == 120
    bad = httpx.get(f"{ui.base}/api/packets", params={"sql": "SELEC pname FROM packets"})
    assert bad.status_code == 400 and "syntax error" in bad.json()["error"]
    limited = httpx.get(f"{ui.base}/api/packets", params={"sql": "1", "limit": 7}).json()
    assert len(limited["rows"]) == 7 and limited["truncated"] is True


@pytest.mark.e2e
def test_packet_detail(ui: Ui) -> None:
    first = httpx.get(f"{ui.base}/api/packet/1").json()
    assert first["index"] == 1 and first["payload"]["size"] == first["length"]
    assert httpx.get(f"{ui.base}/api/packet/99999").status_code == 404
    # ids int() reads, but no id is written so: Arabic-Indic 3, an underscore, a space
    for other in ("%D9%A3", "1_0", "%201"):
        assert httpx.get(f"{ui.base}/api/packet/{other}").status_code == 400, other
        assert httpx.get(f"{ui.base}/api/exchanges", params={"after_id": other}).status_code == 400


@pytest.mark.e2e
def test_times_are_worded_by_the_server(ui: Ui, db: Path) -> None:
    # The browser does not guess units: every event time comes worded as detect_timestamp words it, and
    # integers a double would round (nanoseconds) come as exact decimal text.
    with sqlite3.connect(db) as conn:
        started = dict(conn.execute("SELECT id, started_ns FROM exchanges").fetchall())
        index, raw, payload = conn.execute(
            'SELECT "index", timestamp, payload_binary FROM packets WHERE is_binary = 1 LIMIT 1'
        ).fetchone()
    assert raw > 2**53
    rows = httpx.get(f"{ui.base}/api/exchanges").json()["rows"]
    assert {r[0]: r[1] for r in rows} == {i: detect_timestamp(ns).isoformat() for i, ns in started.items()}

    query = f'SELECT "index", timestamp, 83000000000 AS received_ns FROM packets WHERE "index" = {index}'
    body = httpx.get(f"{ui.base}/api/packets", params={"sql": query}).json()
    assert body["rows"] == [[index, str(raw), 83_000_000_000]]
    assert body["times"] == {"1": [detect_timestamp(raw).isoformat()], "2": ["+83.000000s since boot"]}

    detail = httpx.get(f"{ui.base}/api/packet/{index}").json()
    assert detail["timestamp"] == str(raw) and detail["time_unit"] == "ns"
    assert detail["time"] == detect_timestamp(raw).isoformat()
    assert detail["payload"]["kind"] == "hex"
    assert detail["payload"]["hex"] == hexdump(payload)
    assert detail["payload"]["text"] == payload.decode("utf-8", "replace")


@pytest.mark.e2e
def test_exchange_detail_json_pretty_and_hex(ui_bulk: Ui) -> None:
    text = httpx.get(f"{ui_bulk.base}/api/exchange/1").json()
    assert text["response"]["body"]["kind"] == "json"
    assert text["response"]["body"]["text"] == json.dumps({"id": 1, "name": "user1"}, indent=2)
    assert ["Host", "api.example.com"] in text["request"]["headers"]
    assert text["url"] == "https://api.example.com/v1/items/1"
    binary = httpx.get(f"{ui_bulk.base}/api/exchange/7").json()
    assert binary["response"]["body"]["kind"] == "hex"
    assert (
        binary["response"]["body"]["text"]
        .splitlines()[0]
        .startswith("00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f")
    )
    assert httpx.get(f"{ui_bulk.base}/api/exchange/9999").status_code == 404
    assert httpx.get(f"{ui_bulk.base}/api/exchange/abc").status_code == 400


@pytest.mark.e2e
def test_har_download(ui_bulk: Ui) -> None:
    response = httpx.get(f"{ui_bulk.base}/api/har", params={"filter": "status = 404"})
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith('attachment; filename="ecaptureq-')
    doc = response.json()
    assert doc["log"]["version"] == "1.2"
    assert [e["response"]["status"] for e in doc["log"]["entries"]] == [404] * 5
    assert httpx.get(f"{ui_bulk.base}/api/har", params={"filter": "nope ="}).status_code == 400


@pytest.mark.e2e
def test_status_in_database_mode(ui_bulk: Ui, bulk: Path) -> None:
    body = httpx.get(f"{ui_bulk.base}/api/status").json()
    assert body["mode"] == "database" and body["db"] == str(bulk)
    assert body["totals"]["exchanges"] == 50
    assert "live" not in body


@pytest.mark.e2e
def test_page_and_static_files(ui: Ui) -> None:
    page = httpx.get(f"{ui.base}/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{ui.base}/static/app.js")
    assert script.status_code == 200 and "class VirtualTable" in script.text
    for path in ("/static/app.js", "/static/style.css", "/"):
        assert "http://" not in httpx.get(f"{ui.base}{path}").text.replace("http://127.0.0.1", "")


@pytest.mark.e2e
def test_foreign_origin_and_host_are_refused(ui: Ui) -> None:
    evil = httpx.get(f"{ui.base}/api/status", headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    local = httpx.get(f"{ui.base}/api/status", headers={"Origin": "http://localhost:1234"})
    assert local.status_code == 200
    rebinding = httpx.get(f"{ui.base}/api/status", headers={"Host": "evil.example:80"})
    assert rebinding.status_code == 403
    cross = httpx.get(f"{ui.base}/api/status", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403


@pytest.mark.e2e
def test_token_required(ui_token: Ui) -> None:
    assert ui_token.url == f"{ui_token.base}/?token={TOKEN}"
    for path in ("/api/status", "/api/exchanges", "/api/exchange/1", "/api/har", "/api/stream"):
        refused = httpx.get(f"{ui_token.base}{path}")
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{ui_token.base}/api/status", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    bearer = httpx.get(f"{ui_token.base}/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    # the token in an API URL does not count: only the page takes it, once
    assert httpx.get(f"{ui_token.base}/api/status", params={"token": TOKEN}).status_code == 401


@pytest.mark.e2e
def test_no_cookie_carries_the_token_tickets_are_single_use(ui_token: Ui) -> None:
    # the page and its files hold no data: served without the token, and they set no cookie
    for path in ("/", f"/?token={TOKEN}", "/static/app.js"):
        page = httpx.get(f"{ui_token.base}{path}")
        assert page.status_code == 200 and "set-cookie" not in page.headers, path
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{ui_token.base}/api/ticket").status_code == 401
    ticket = httpx.post(f"{ui_token.base}/api/ticket", headers=bearer).json()["ticket"]
    assert httpx.get(f"{ui_token.base}/api/status", params={"ticket": ticket}).status_code == 401  # not there
    assert httpx.get(f"{ui_token.base}/api/har", params={"ticket": ticket}).status_code == 200
    assert httpx.get(f"{ui_token.base}/api/har", params={"ticket": ticket}).status_code == 401  # used
    with httpx.Client(base_url=ui_token.base, headers=bearer) as client:
        assert client.get("/api/status", headers={"Origin": "https://evil.example"}).status_code == 403
        trusted = client.get("/api/status", headers={"Origin": "http://trusted.example:9000"})
        assert trusted.status_code == 200


@pytest.mark.e2e
def test_live_mode_records_while_it_shows(tmp_path: Path) -> None:
    served = start_serve("--demo", "--interval", "0.02")
    db = tmp_path / "live.db"
    ui = start_ui("--source", served.url, "--db", str(db))
    try:
        assert f"recording {served.url} into {db}" in ui.banner
        body: dict[str, object] = {}
        for _ in range(100):  # bounded: until the first rows are committed and shown
            body = httpx.get(f"{ui.base}/api/exchanges").json()
            if len(body["rows"]) >= 5:  # type: ignore[arg-type]
                break
            httpx.get(f"{ui.base}/api/status", timeout=5)
        assert len(body["rows"]) >= 5  # type: ignore[arg-type]
        status = httpx.get(f"{ui.base}/api/status").json()
        assert status["mode"] == "live" and status["source"] == served.url
        assert status["live"]["connected"] is True and status["live"]["events"] > 0
        with httpx.stream("GET", f"{ui.base}/api/stream", params={"after_id": 0}, timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = []
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("event: status"):
                    break
        assert "event: rows" in lines
    finally:
        code, err = stop_ui(ui)
        stop_serve(served)
    assert code == 0, err
    assert "exchanges written to" in err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM exchanges").fetchone()[0] >= 5
        assert conn.execute("SELECT count(*) FROM connections").fetchone()[0] == 1


@pytest.mark.e2e
def test_cli_errors(tmp_path: Path) -> None:
    loud = run_cli("ui", "--db", str(tmp_path / "x.db"), "--listen", "http://0.0.0.0:0/")
    assert loud.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in loud.stderr
    missing = run_cli("ui", "--db", str(tmp_path / "missing.db"), "--listen", "http://127.0.0.1:0/")
    assert missing.returncode == 2 and "no such database file" in missing.stderr
    (tmp_path / "not.db").write_text("hello")
    notdb = run_cli("ui", "--db", str(tmp_path / "not.db"), "--listen", "http://127.0.0.1:0/")
    assert notdb.returncode == 11 and len(notdb.stderr.strip().splitlines()) == 1
    nothing = run_cli("ui", "--listen", "http://127.0.0.1:0/")
    assert nothing.returncode == 2 and "give --source URL" in nothing.stderr
    scheme = run_cli("ui", "--db", "x.db", "--listen", "ftp://127.0.0.1:0/")
    assert scheme.returncode == 2 and "expected http://HOST:PORT/" in scheme.stderr
    # a source that is not up is waited for: test_ui_waits_for_source.py


def test_curl_command_text_and_binary() -> None:
    detail = Exchange(
        id=1,
        connection="c",
        protocol="http/1.1",
        dst_ip="10.0.0.1",
        dst_port=443,
        request=HttpMessage(
            kind="request",
            method="POST",
            url="/login?next=/a b",
            headers=[("Host", "a.example"), ("Content-Length", "9"), ("X-Q", "it's")],
            body_text="user=o'neil",
        ),
    )
    url = har_entry(detail)["request"]["url"]
    assert curl_command(detail, url) == (
        "curl \\\n  -X POST \\\n  --url 'https://a.example/login?next=/a b' \\\n  -H 'Host: a.example' \\\n"
        "  -H 'X-Q: it'\"'\"'s' \\\n  --data-raw 'user=o'\"'\"'neil'"
    )
    detail.protocol = "h2"
    detail.request = HttpMessage(
        kind="request",
        method="PUT",
        url="https://b.example/blob",
        headers=[(":method", "PUT"), ("content-encoding", "gzip")],
        content_encoding="gzip",
        body=b"\x00\xff'",
    )
    assert curl_command(detail, "https://b.example/blob") == (
        "printf '\\000\\377\\047' | curl \\\n  --http2 \\\n  -X PUT \\\n  --url https://b.example/blob \\\n"
        "  --data-binary @-"
    )
    assert curl_command(Exchange(id=2, connection="c", request=None), "") is None


def test_body_view() -> None:
    assert body_view(None)["kind"] == "empty"
    claims = HttpMessage("response", body_text="not json", body_size=8)
    claims.is_json = True  # a stored message that says so
    assert body_view(claims)["kind"] == "text"
    json_body = HttpMessage("response", body_text='{"a":[1]}', content_type="application/json")
    assert body_view(json_body)["text"] == '{\n  "a": [\n    1\n  ]\n}'
    view = body_view(HttpMessage("response", body=b"\x01" * 20, body_size=20))
    assert view["kind"] == "hex" and view["text"].count("\n") == 1
