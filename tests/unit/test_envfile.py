"""The --env-file dialect: what python-dotenv and systemd's EnvironmentFile= have in common."""

from __future__ import annotations

import os

import pytest

from asgi_worker.envfile import load_env_file, parse_env_lines
from asgi_worker.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1", {"A": "1"}),
        ("  A = 1  ", {"A": "1"}),
        ("export A=1", {"A": "1"}),
        ("# comment\n\nA=1\n", {"A": "1"}),
        ("A=1 # note", {"A": "1"}),
        ("A=1#not-a-comment", {"A": "1#not-a-comment"}),
        ("A='single $quoted # kept'", {"A": "single $quoted # kept"}),
        ('A="line\\nbreak \\"q\\" \\\\"', {"A": 'line\nbreak "q" \\'}),
        ('A="a # b" # c', {"A": "a # b"}),
        ("A=", {"A": ""}),
        ("A=x=y", {"A": "x=y"}),
        ("A=1\nA=2", {"A": "2"}),
        ("DJANGO.SETTINGS=x", {"DJANGO.SETTINGS": "x"}),
    ],
)
def test_parse(text, expected):
    assert parse_env_lines(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JUSTANAME", "line 1: expected NAME=VALUE"),
        ("A=1\n1A=2", "line 2: expected NAME=VALUE"),
        ("A B=1", "line 1"),
        ('A="open', 'line 1: unterminated " quote'),
        ("A='open", "line 1: unterminated ' quote"),
    ],
)
def test_bad_lines_name_the_line(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_env_lines(text, "app.env")


def test_load_keeps_variables_already_set(tmp_path, monkeypatch):
    path = tmp_path / "app.env"
    path.write_text("ENVFILE_TEST_NEW=from-file\nENVFILE_TEST_SET=from-file\n")
    monkeypatch.setenv("ENVFILE_TEST_SET", "from-environment")
    monkeypatch.delenv("ENVFILE_TEST_NEW", raising=False)
    load_env_file(path)
    assert os.environ["ENVFILE_TEST_NEW"] == "from-file"
    assert os.environ["ENVFILE_TEST_SET"] == "from-environment"
    monkeypatch.delenv("ENVFILE_TEST_NEW")


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"could not read env file .*missing\.env: No such file"):
        load_env_file(tmp_path / "missing.env")
