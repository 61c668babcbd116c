"""The commands as a person in a Chinese locale runs them (``LANG=zh_CN.UTF-8``): every line they
print is Chinese, no English sentence left; with no language set they stay English (docs/cli.md)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
# names, not sentences: the product, protocols and parts, and the commands' own names
NAMES = {"segue", "webrtc", "redis", "http", "https", "socket", "io", "api", "url", "rest", "sdk", "webhook", "nginx",
         "id", "cpu", "authorization", "bearer", "serve", "agent", "apikey", "add", "set", "list", "remove", "create",
         "revoke", "username", "url", "sgk", "ep", "demo"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_") and k not in LOCALE_VARS}
    env.update({"SEGUE_DATA_DIR": str(tmp_path / "data"), "SEGUE_LOG_LEVEL": "warning"})
    env.update(extra)
    return env


def _segue(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], env=_env(tmp_path, **env), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def _prose(text: str) -> str:
    """``text`` without what is not prose: commands in backticks, URLs, options, choices, key=value
    fields, quoted values, dotted/slashed/underscored names (settings, files, variables), example
    lists (billing,de), upper-case metavariables."""
    for pattern in (r"`[^`]*`", r"\b\w+://\S+", r"(?<![\w-])--?[\w-]+", r"\{[^}]*\}", r"\S+=\S*", r"'[^']*'",
                    r"\b\w+(?:[./_]\w+)+\b", r"\b\w+(?:,\w+)+\b", r"\b[A-Z][A-Z_]+\b"):
        text = re.sub(pattern, " ", text)
    return text


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z]{2,}", text) if w.lower() not in NAMES]


def english_sentences(text: str) -> list[str]:
    """Runs of two or more English words (other than the names in NAMES) in the prose of ``text``."""
    return [run for run in re.findall(r"[A-Za-z]{2,}(?:[ ,:;()]+[A-Za-z]{2,})+", _prose(text)) if len(_words(run)) >= 2]


def _assert_chinese(text: str) -> None:
    assert re.search(r"[\u4e00-\u9fff]", text), f"no Chinese in:\n{text}"
    assert english_sentences(text) == [], f"English left in:\n{text}"
    for line in text.splitlines():  # a line with an English word of prose holds Chinese too
        assert not _words(_prose(line)) or re.search(r"[\u4e00-\u9fff]", line), f"an English line: {line!r}"


def test_the_detector_finds_english() -> None:
    """The check below can fail: it flags the English lines the commands printed before."""
    assert english_sentences("segue: error: --password must be at least 4 characters")
    assert english_sentences("  customer widget: http://h/widget/   agent console: http://h/agent/")
    assert english_sentences("Segue 0.1.0 is running at http://127.0.0.1:8080/")
    assert english_sentences("no agents")
    assert not english_sentences("segue: 错误: --password 至少需要 4 个字符")
    with pytest.raises(AssertionError):
        _assert_chinese("已添加 ada\ndisabled")


def test_serve_prints_its_start_up_lines_in_chinese(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)],
                            env=_env(tmp_path, LANG="zh_CN.UTF-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]  # the URL, the pages, the demo login
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    text = "".join(lines)
    assert lines[0].startswith("Segue ") and lines[0].split()[-1] == f"http://127.0.0.1:{port}/", lines[0]
    assert "客户小部件" in lines[1] and "坐席控制台" in lines[1] and "演示坐席登录" in lines[2], text
    _assert_chinese(text)


def test_serve_errors_in_chinese(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        res = _segue(tmp_path, "serve", "--port", str(busy), LANG="zh_CN.UTF-8")
    assert res.returncode == 1
    assert res.stderr.startswith("segue: 错误: 无法监听 127.0.0.1:") and "地址已被占用" in res.stderr, res.stderr
    _assert_chinese(res.stderr)
    res = _segue(tmp_path, "serve", LANG="zh_CN.UTF-8", SEGUE_REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0",
                 SEGUE_REDIS_STARTUP_TIMEOUT_S="2")
    assert res.returncode == 1 and res.stderr.startswith("segue: 错误: 无法连接 redis://"), res.stderr
    assert english_sentences(res.stderr.split("Redis：", 1)[0]) == []  # the reason after it is the OS's own
    res = _segue(tmp_path, "serve", LANG="zh_CN.UTF-8", SEGUE_HTTP_PORT="abc")  # a config error
    assert res.returncode == 2 and res.stderr == "segue: 错误: 设置项 http.port 必须是整数，收到的是 'abc'\n", res.stderr
    res = _segue(tmp_path, "serve", "--host", "0.0.0.0", LANGUAGE="zh_CN")
    assert res.returncode == 1 and "拒绝启动" in res.stderr, res.stderr
    _assert_chinese(res.stderr)


def test_accounts_commands_in_chinese(tmp_path: Path, redis_url: str) -> None:
    env = {"LANG": "zh_CN.UTF-8", "SEGUE_REDIS_URL": redis_url,
           "SEGUE_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}:"}
    listed = _segue(tmp_path, "agent", "list", **env)
    assert listed.returncode == 0 and listed.stdout.strip() == "没有坐席", listed.stdout + listed.stderr
    added = _segue(tmp_path, "agent", "add", "ada", "--password", "pw-1234", "--skills", "billing", **env)
    assert added.returncode == 0 and added.stdout.startswith("已添加 ada "), added.stdout + added.stderr
    again = _segue(tmp_path, "agent", "add", "ada", "--password", "pw-1234", **env)
    assert again.returncode == 1 and again.stderr.strip() == "segue: 错误: 坐席 'ada' 已存在"
    results = [
        _segue(tmp_path, "agent", "add", "bo", "--password", "ab", **env),  # the command's own check
        _segue(tmp_path, "agent", "add", "bo", "--password", "pw-1234", "--capacity", "chat=lots", **env),
        _segue(tmp_path, "agent", "remove", "ghost", **env),  # the protocol's not_found
        _segue(tmp_path, "agent", "add", "bo", **env),  # no terminal to ask for the password on
        _segue(tmp_path, "agent", **env),  # argparse's own error
        _segue(tmp_path, "agent", "add", "bo", "--role", "boss", **env),  # argparse's invalid choice
    ]
    for res in results:
        assert res.returncode != 0 and res.stdout == "", res.stdout
        error = res.stderr.strip().splitlines()  # argparse prints its usage first, then the error
        assert re.match(r"segue( \w+)*: 错误: ", error[-1]), res.stderr
        _assert_chinese(res.stderr)
    assert "缺少以下必需参数" in results[4].stderr and "无效的选项" in results[5].stderr
    removed = _segue(tmp_path, "agent", "remove", "ada", **env)
    assert removed.returncode == 0 and removed.stdout.strip() == "已删除坐席 ada"
    for args in (("apikey", "list"), ("webhook", "list")):
        res = _segue(tmp_path, *args, **env)
        assert res.returncode == 0, res.stderr
        _assert_chinese(res.stdout)
    for args in ((), ("agent",), ("agent", "add"), ("apikey", "create"), ("webhook", "set")):
        helped = _segue(tmp_path, *args, "--help", **env)
        assert helped.returncode == 0 and helped.stdout.startswith("用法："), helped.stdout
        _assert_chinese(helped.stdout)


def test_english_by_default(tmp_path: Path) -> None:
    """No locale variable, or one naming a language without a catalogue, or LC_ALL=C over a Chinese
    LANG: English, as scripts that read the output expect."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    assert re.match(rf"Segue \S+ is running at http://127\.0\.0\.1:{port}/$", lines[0]), lines
    assert lines[1].startswith("  customer widget: ") and lines[2].startswith("  demo agent login: "), lines
    for env in ({}, {"LANG": "fr_FR.UTF-8"}, {"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}):
        res = _segue(tmp_path, "agent", "add", "bo", "--password", "ab", **env)
        assert res.returncode == 1 and res.stderr == "segue: error: --password must be at least 4 characters\n", env
        helped = _segue(tmp_path, "agent", "--help", **env)
        assert helped.stdout.startswith("usage: segue agent") and "options:" in helped.stdout, helped.stdout
