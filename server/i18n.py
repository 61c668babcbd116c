"""What the ``segue`` commands print for a person, in the reader's language (GNU gettext catalogues).

Why: many of the businesses Segue serves work in Chinese. The pages translate in the browser
(web/sdk/i18n.js); the command line translates here, the way command-line tools do: the language
comes from ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES`` or ``LANG`` (the first one set; ``LANGUAGE``
may list several, ``zh_CN:en``), and English is printed when none names a catalogue shipped in
``server/locale`` (``C`` and ``POSIX`` mean English). Log records stay English: they go to files and
to tools that search them, so only lines printed for a person go through ``_()``.

Catalogues: ``server/locale/<language>/LC_MESSAGES/segue.po`` is what translators edit; the
compiled ``segue.mo`` beside it is committed (a fresh clone needs no build step). ``make locale``
extracts the marked strings (``_``, ``N_``, ``Message``) and argparse's own words, merges them into
every ``.po`` and compiles (docs/cli.md "Languages").
"""

from __future__ import annotations

import functools
import gettext
import re
from pathlib import Path

DOMAIN = "segue"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


@functools.lru_cache(maxsize=1)
def catalog() -> gettext.NullTranslations:
    """The reader's catalogue, chosen once per process from the environment (English when none fits)."""
    return gettext.translation(DOMAIN, str(LOCALE_DIR), fallback=True)


def _(message: str) -> str:
    """``message`` (an English sentence, a ``str.format`` template) in the reader's language."""
    return catalog().gettext(message)


def N_(message: str) -> str:
    """Marks ``message`` for the catalogue where it is defined; it is translated later, where it is printed."""
    return message


def translate_argparse() -> None:
    """Have argparse print its own words (``usage:``, ``options``, ``error:``...) from this catalogue.

    argparse looks them up with ``gettext.gettext``, i.e. in the process's global text domain
    (``messages`` unless changed), so the commands' ``main()`` makes ``segue`` that domain. Library
    code never calls this: it is the command line's choice for its own process.
    """
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)


class Message(str):
    """An English sentence that remembers its template and values, to be printed translated later.

    Why: one exception message is both logged (English, for log files) and printed for the person
    running a command (their language). ``str(message)`` and the message itself are the English
    text; :func:`localized` gives the translation. Values that are Messages are translated too.
    """

    template: str
    params: dict[str, object]

    def __new__(cls, template: str, /, **params: object) -> "Message":
        self = super().__new__(cls, template.format(**params) if params else template)
        self.template = template
        self.params = params
        return self

    def __reduce__(self) -> tuple[object, ...]:  # pickles (multiprocessing) as the English text
        return (str, (str(self),))


def localized(value: object) -> str:
    """``value`` as text for the reader: a :class:`Message` translated, an exception by its first
    argument when that is a Message, anything else as ``str()``."""
    if isinstance(value, BaseException):
        if len(value.args) == 1 and isinstance(value.args[0], Message):
            return localized(value.args[0])
        return str(value)
    if isinstance(value, Message):
        params = {k: localized(v) if isinstance(v, Message) else v for k, v in value.params.items()}
        translated = _(value.template)
        return translated.format(**params) if params else translated
    return str(value)


@functools.lru_cache(maxsize=256)
def _pattern(template: str) -> re.Pattern[str]:
    """A regex matching what ``template.format(...)`` produced, one named group per field."""
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for i, part in enumerate(parts):
        out.append(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)")
    return re.compile("".join(out) + r"\Z", re.S)


def recognise(text: str, templates: tuple[str, ...]) -> Message | None:
    """``text`` as a :class:`Message` of the first template that produced it, or None.

    Why: some messages come, already formatted in English, from a layer that knows no languages
    (the protocol's errors in ``signaling``); the command line knows their templates and so can
    print them translated.
    """
    for template in templates:
        found = _pattern(template).match(text)
        if found:
            return Message(template, **found.groupdict())
    return None
