"""``node/cli.py``: how every command reports a user's mistake (one line, the right exit code)."""

from __future__ import annotations

import pathlib

from click.testing import CliRunner

from node.cli import cli


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_a_path_that_cannot_be_written_is_one_line_naming_it(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    code, out = _run("catalog", "template", "admin_penalty", "--format", "csv", "--out", str(blocker / "t.csv"))
    assert code == 2 and "E_IO" in out and str(blocker / "t.csv") in out


def test_numbers_out_of_range_are_usage_errors_not_overflows(tmp_path: pathlib.Path) -> None:
    for args in (("outbox", "replay", "99999999999999999999999"),
                 ("conflicts", "resolve", "99999999999999999999999", "--keep", "x", "--note", "n"),
                 ("ca", "issue", "--ca", str(tmp_path), "--id", "dept:330102:x", "--role", "node",
                  "--out", str(tmp_path / "o"), "--days", "99999999")):
        code, out = _run("--config", str(tmp_path / "node.yaml"), *args)
        assert code == 2 and "range" in out, (args, out)


def test_a_negative_number_of_working_days_counts_backwards() -> None:
    code, out = _run("calendar", "add-days", "2026-12-07", "-1", "--json")  # a Monday
    assert code == 0, out
    assert '"due": "2026-12-04"' in out  # the Friday before


def test_a_date_at_the_end_of_the_calendar_is_a_usage_error() -> None:
    code, out = _run("calendar", "add-days", "9999-12-31", "5")
    assert code == 2 and "out of range" in out


def test_a_store_that_is_down_exits_4_as_an_unavailable_service(tmp_path: pathlib.Path) -> None:
    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city",
                    store_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    code, out = _run("--config", str(cfg), "outbox", "status")
    assert code == 4 and "E_STORE" in out


def test_every_command_that_prints_data_takes_json() -> None:
    import click

    def walk(cmd: click.Command, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
        if isinstance(cmd, click.Group):
            return [found for name, sub in cmd.commands.items() for found in walk(sub, (*path, name))]
        return [(path, cmd)]

    # start and demo run until stopped and log; broker definitions prints RabbitMQ's own JSON
    exempt = {("start",), ("demo",), ("broker", "definitions")}
    missing = [" ".join(path) for path, cmd in walk(cli, ())
               if path not in exempt and "--json" not in {o for p in cmd.params for o in getattr(p, "opts", [])}]
    assert missing == []


def test_commands_that_change_something_say_what_in_json(tmp_path: pathlib.Path) -> None:
    import json

    code, out = _run("ca", "init", "--out", str(tmp_path / "ca"), "--json")
    assert code == 0 and json.loads(out)["ca"] == str(tmp_path / "ca")
    code, out = _run("catalog", "template", "admin_penalty", "--out", str(tmp_path / "t.csv"), "--json")
    assert code == 0 and json.loads(out) == {"item": "admin_penalty", "format": "csv", "out": str(tmp_path / "t.csv")}


def test_with_json_clicks_own_refusals_come_out_as_json_too(tmp_path) -> None:
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "node", "catalog", "template", "admin_penalty", "--format", "pdf",
                          "--out", str(tmp_path / "t.pdf"), "--json"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, check=False)
    assert run.returncode == 2
    error = json.loads(run.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_USAGE", "format")
    assert "Traceback" not in run.stderr


def test_with_json_a_path_that_cannot_be_written_is_a_json_error(tmp_path) -> None:
    import json

    r = CliRunner().invoke(cli, ["catalog", "template", "admin_penalty", "--out",
                                 str(tmp_path / "no-such-dir" / "t.csv"), "--json"])
    assert r.exit_code == 2
    assert json.loads(r.stdout)["error"]["code"] == "E_IO"


def test_a_postgresql_database_that_does_not_exist_is_one_line_exit_2(tmp_path: pathlib.Path,
                                                                      pg_database_url: str) -> None:
    from sqlalchemy.engine import make_url

    from node.provisioning import init_node

    missing = make_url(pg_database_url).set(database="credit_test_not_created").render_as_string(hide_password=False)
    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city", store_url=missing)
    for args in (("outbox", "status"), ("verify",), ("audit", "verify")):
        code, out = _run("--config", str(cfg), *args)
        assert code == 2, (args, out)
        assert 'E_CONFIG' in out and 'database "credit_test_not_created" does not exist' in out, out
        assert "sqlalche.me" not in out and "migration" not in out and len(out.strip().splitlines()) == 1, out


def test_a_sqlite_store_in_a_directory_that_does_not_exist_is_refused_not_created(tmp_path: pathlib.Path) -> None:
    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city")
    typo = tmp_path / "n" / "dta"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("sqlite:///node.db", f"sqlite:///{typo}/node.db"),
                   encoding="utf-8")
    for args in (("outbox", "status"), ("verify",), ("audit", "verify"), ("start", "--listen", "127.0.0.1:0")):
        code, out = _run("--config", str(cfg), *args)
        assert code == 2, (args, out)
        assert f"E_CONFIG [store.url]: store.url: no store at {typo / 'node.db'}" in out and "credit-node init" in out
    assert not typo.exists()


def test_init_makes_the_directory_of_a_sqlite_store_it_is_given(tmp_path: pathlib.Path) -> None:
    store = tmp_path / "stores" / "city" / "node.db"
    code, out = _run("init", str(tmp_path / "n"), "--id", "city:330100", "--level", "city",
                     "--store", f"sqlite:///{store}")
    assert code == 0, out
    code, out = _run("--config", str(tmp_path / "n" / "node.yaml"), "outbox", "status")
    assert code == 0, out
    assert store.is_file()


def test_output_into_a_closed_pipe_ends_quietly_with_141(tmp_path: pathlib.Path) -> None:
    import os
    import subprocess
    import sys

    from node.cli import READER_GONE
    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is gone before the first line
    try:
        for args in (("calendar", "add-days", "2026-09-30", "10"), ("--config", str(cfg), "outbox", "status"),
                     ("catalog", "template", "no_such_item", "--out", str(tmp_path / "t.csv"), "--json")):
            run = subprocess.run([sys.executable, "-m", "node", *args], stdout=write_end, stderr=subprocess.PIPE,
                                 text=True, timeout=60, check=False)
            assert (run.returncode, run.stderr) == (READER_GONE, ""), args
    finally:
        os.close(write_end)


def test_an_argument_that_is_not_utf8_is_a_usage_error_naming_it(tmp_path: pathlib.Path) -> None:
    import json

    from node.provisioning import init_node

    # A byte that is not UTF-8 (a GBK terminal, a script's latin-1 text) reaches Python as a lone
    # surrogate; stored or sent, it raised UnicodeEncodeError from the database with a traceback.
    cfg = str(init_node(tmp_path / "n", node_id="city:330100", level="city"))
    bad = b"\xff".decode("utf-8", "surrogateescape")
    for field, args in (("record_id", ("route", "explain", bad)),
                        ("source", ("rejections", "list", "--source", bad)),
                        ("subject", ("authz", "list", "--subject", bad)),
                        ("reason", ("sharing", "suspend", "--reason", f"maintenance {bad}")),
                        ("case_id", ("objection", "show", bad)),
                        ("encoding", ("import", str(cfg), "--item", "admin_penalty", "--encoding", bad))):
        r = CliRunner().invoke(cli, ["--config", cfg, *args, "--json"])
        assert r.exit_code == 2, (args, r.output)
        error = json.loads(r.stdout)["error"]
        assert (error["code"], error["field"]) == ("E_USAGE", field), (args, error)
        assert "UTF-8" in error["message"]


def test_with_json_a_path_that_is_not_utf8_comes_out_as_valid_utf8(tmp_path: pathlib.Path) -> None:
    import json
    import os
    import subprocess
    import sys

    out = os.fsencode(tmp_path) + b"/t\xff.csv"  # a byte no UTF-8 text holds
    run = subprocess.run([sys.executable, "-m", "node", "catalog", "template", "admin_penalty", "--out", out,
                          "--json"], capture_output=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.decode("utf-8"))["out"] == f"{tmp_path}/t\ufffd.csv"  # as ls shows it
    assert os.path.exists(out)


def test_ctrl_c_during_any_command_exits_130_not_1_which_means_problems_found(tmp_path: pathlib.Path,
                                                                               monkeypatch) -> None:
    import json

    import node.integrity
    from node.provisioning import init_node

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(node.integrity, "verify_store", interrupted)
    cfg = str(init_node(tmp_path / "n", node_id="city:330100", level="city"))
    r = CliRunner().invoke(cli, ["--config", cfg, "verify"])
    assert r.exit_code == 130 and "E_INTERRUPTED" in r.stderr and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["--config", cfg, "verify", "--json"])
    assert r.exit_code == 130 and json.loads(r.stdout)["error"]["code"] == "E_INTERRUPTED"


def test_a_store_file_that_is_not_a_database_is_a_configuration_error_not_an_outage(tmp_path: pathlib.Path) -> None:
    import json

    from node.provisioning import init_node

    # store.url naming another file (a typo, the node.yaml itself): trying again later cures nothing,
    # so not exit 4 (a service unavailable), which a supervisor would retry for ever.
    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city")
    (tmp_path / "n" / "node.db").write_bytes(b"not a database, some other file " * 64)
    for args in (("outbox", "status"), ("verify",), ("query", "91350100M000100Y43")):
        r = CliRunner().invoke(cli, ["--config", str(cfg), *args, "--json"])
        assert r.exit_code == 2, (args, r.output)
        error = json.loads(r.stdout)["error"]
        assert (error["code"], error["field"]) == ("E_CONFIG", "store.url"), error
        assert str(tmp_path / "n" / "node.db") in error["message"] and "not a SQLite database" in error["message"]


def test_a_library_warning_in_a_json_command_is_a_json_log_line_on_stderr(tmp_path: pathlib.Path, monkeypatch) -> None:
    import json
    import logging

    import node.store.engine
    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city")
    opened = node.store.engine.missing_store_directory

    def warned(url: str) -> pathlib.Path | None:  # what psycopg says of a session ended under it
        logging.getLogger("psycopg").warning("error ignored in rollback on %s: %s", "<conn>", "server closed")
        logging.getLogger("psycopg").info("not an operator's news")
        return opened(url)

    monkeypatch.setattr(node.store.engine, "missing_store_directory", warned)
    r = CliRunner().invoke(cli, ["--config", str(cfg), "audit", "verify", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ok"] is True  # stdout: the answer alone
    [line] = [json.loads(line) for line in r.stderr.splitlines()]
    assert (line["level"], line["node"]) == ("warning", "city:330100")
    assert line["event"] == "error ignored in rollback on <conn>: server closed"
