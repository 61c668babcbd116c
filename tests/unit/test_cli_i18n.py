"""The command line's catalogues: every marked string translated, the compiled .mo in step with its
.po, the language picked from the environment as command-line tools do, English by default."""

from __future__ import annotations

import argparse
import gettext
import io
import pickle
import re
from pathlib import Path
from typing import Iterator

import pytest
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from server import i18n
from server.cli import SIGNALING_ERRORS, protocol_error
from server.i18n import DOMAIN, LOCALE_DIR, Message, localized, recognise

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "N_": None, "Message": None, "gettext": None, "ngettext": (1, 2)}
LANGUAGES = ("zh_CN",)
PLACEHOLDER = re.compile(r"\{\w*\}|%\(\w+\)[sdr]|%[sdr]")


def _po(language: str):  # type: ignore[no-untyped-def]
    with open(LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as f:
        return read_po(f, locale=language, domain=DOMAIN)


def _marked() -> Iterator[tuple[str, str]]:
    """(where, msgid) of every string the command line marks, and of argparse's own words."""
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT / "server"), keywords=KEYWORDS, comment_tags=()):
        yield f"server/{filename}:{lineno}", message if isinstance(message, str) else message[0]
    for lineno, message, _comments, _context in extract_from_file("python", argparse.__file__, keywords=KEYWORDS):
        yield f"argparse.py:{lineno}", message if isinstance(message, str) else message[0]


@pytest.fixture
def language(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean locale environment (the catalogue chosen again for each test)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    i18n.catalog.cache_clear()
    yield monkeypatch
    i18n.catalog.cache_clear()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_marked_string_is_translated(lang: str) -> None:
    catalog = _po(lang)
    missing = []
    for where, msgid in _marked():
        entry = catalog.get(msgid)
        strings = [] if entry is None else ([entry.string] if isinstance(entry.string, str) else list(entry.string))
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(f"{where}: {msgid!r}")
    assert not missing, f"untranslated in {lang} (run `make locale`, translate, run it again):\n" + "\n".join(missing)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_keep_their_placeholders(lang: str) -> None:
    wrong = []
    for entry in _po(lang):
        if not entry.id or not entry.string:
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        wanted = sorted(set(PLACEHOLDER.findall(ids[-1])))
        for text in strings:
            if sorted(set(PLACEHOLDER.findall(text))) != wanted:
                wrong.append(f"{entry.id!r} -> {text!r}")
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalogue_matches_its_source(lang: str) -> None:
    """The committed .mo is what `make locale` compiles from the .po (a clone needs no build step)."""
    compiled = io.BytesIO()
    write_mo(compiled, _po(lang))
    committed = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
    expected = gettext.GNUTranslations(io.BytesIO(compiled.getvalue()))._catalog  # type: ignore[attr-defined]
    shipped = gettext.GNUTranslations(committed.open("rb"))._catalog  # type: ignore[attr-defined]
    assert shipped == expected, f"{committed} is out of date: run `make locale`"


def test_the_package_ships_the_compiled_catalogues() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"locale/*/LC_MESSAGES/*.mo"' in text


@pytest.mark.parametrize(
    ("env", "chinese"),
    [
        ({}, False),
        ({"LANG": "C.UTF-8"}, False),
        ({"LANG": "zh_CN.UTF-8"}, True),
        ({"LANG": "zh_CN"}, True),
        ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, True),
        ({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, False),  # LC_ALL wins over LANG
        ({"LANGUAGE": "zh_CN:en", "LANG": "en_US.UTF-8"}, True),  # LANGUAGE first of all
        ({"LANGUAGE": "fr:zh_CN"}, True),  # a list: the first language with a catalogue
        ({"LANG": "zh_TW.UTF-8"}, False),  # no Traditional Chinese catalogue: English, not Simplified
        ({"LANG": "fr_FR.UTF-8"}, False),
    ],
)
def test_language_comes_from_the_environment(language: pytest.MonkeyPatch, env: dict[str, str], chinese: bool) -> None:
    for name, value in env.items():
        language.setenv(name, value)
    text = i18n._("Segue {version} is running at {url}")
    assert (text == "Segue {version} 已启动，地址 {url}") is chinese, text
    if not chinese:
        assert text == "Segue {version} is running at {url}"


def test_message_is_english_text_and_prints_translated(language: pytest.MonkeyPatch) -> None:
    message = Message("cannot reach Redis at {url}: {reason}", url="redis://h:1/0", reason="refused")
    assert message == "cannot reach Redis at redis://h:1/0: refused"
    assert pickle.loads(pickle.dumps(message)) == message  # crosses processes as plain English
    error = RuntimeError(Message("embedded redis-server in {folder} did not start: {error}",
                                 folder="/d", error=Message("it did not answer")))
    assert str(error) == "embedded redis-server in /d did not start: it did not answer"  # what logs get
    assert localized(error) == str(error)
    language.setenv("LANG", "zh_CN.UTF-8")
    i18n.catalog.cache_clear()
    assert localized(message) == "无法连接 redis://h:1/0 上的 Redis：refused"
    assert localized(error) == "/d 中的内置 redis-server 未能启动：它没有响应"  # nested messages too
    assert localized(RuntimeError("plain")) == "plain"


def test_protocol_errors_are_recognised_from_their_english_text(language: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Real errors of the layer that knows no languages (signaling) match a template: the CLI can
    print them translated; in English they print exactly as signaling wrote them."""
    from signaling import parse_capacity
    from signaling.apikeys import check_name, check_scopes
    from signaling.errors import ProtocolError, not_found
    from signaling.webhooks import check_url

    errors: list[Exception] = [not_found("agent 'bob'"), not_found("API key 'abc'"), not_found("webhook endpoint ep_1")]
    for bad in ("", "ftp://x.example/h", "https:///h", "https://u:p@x.example/h", "https://x.example/h#f",
                "https://x.example:0/h"):
        with pytest.raises(ProtocolError) as caught:
            check_url(bad)
        errors.append(caught.value)
    for call in (lambda: check_scopes([]), lambda: check_scopes(["nope"]), lambda: check_name("!"),
                 lambda: parse_capacity("chat=lots")):
        with pytest.raises((ProtocolError, ValueError)) as raised:
            call()
        errors.append(raised.value)
    from signaling import NodeIdError, claim_node_id

    (tmp_path / "node-id").write_text("not an id!\n")
    with pytest.raises(NodeIdError) as bad_file:
        claim_node_id(tmp_path)
    errors.append(bad_file.value)
    for exc in errors:
        text = str(getattr(exc, "message", exc))
        assert recognise(text, SIGNALING_ERRORS) is not None, f"no template in server/cli.py SIGNALING_ERRORS for {text!r}"
        assert localized(protocol_error(exc)) == text
    language.setenv("LANG", "zh_CN.UTF-8")
    i18n.catalog.cache_clear()
    assert localized(protocol_error(not_found("agent 'bob'"))) == "坐席 'bob' 不存在"
    assert localized(protocol_error(ValueError("capacity must look like chat=3,voice=1 (got 'x')"), "--capacity")) \
        == "--capacity：容量的格式应为 chat=3,voice=1（收到的是 'x'）"
    assert localized(protocol_error(ProtocolError("invalid", "something new"))) == "something new"  # unknown: as is
    assert localized(protocol_error(bad_file.value)).startswith(f"{tmp_path / 'node-id'} 应保存本节点的 ID")


def test_no_module_that_translates_with_underscore_also_binds_it() -> None:
    """``_`` is the translation function wherever ``server.i18n._`` is imported: a function of such a
    module that also binds ``_`` (``done, _ = ...``, ``for _ in``) makes every ``_("...")`` in it an
    UnboundLocalError (it broke ``serve --workers`` once)."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted(Path(__file__).resolve().parents[2].joinpath("server").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        imports_it = any(isinstance(n, ast.ImportFrom) and n.module and n.module.endswith("i18n")
                         and any(a.name == "_" and a.asname is None for a in n.names) for n in ast.walk(tree))
        if not imports_it:
            continue
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                if isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store):
                    offenders.append(f"{path.name}:{node.lineno} in {fn.name}")
    assert not offenders, f"binds _ where _ translates (use another name): {offenders}"
