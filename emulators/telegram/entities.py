"""Message content as the Bot API checks it: Telegram HTML to entities, length, keyboards."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulators.telegram.wire import bad

TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
MAX_INLINE_BUTTONS = 100


class EntityParseError(ValueError):
    """HTML that Telegram would refuse with "can't parse entities"."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit Telegram uses for entity offsets."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


_SUPPORTED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode ``&...`` at ``pos`` the way TDLib does (``;`` optional); None if not an entity."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and "0" <= text[end] <= "9":
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


@dataclass
class _OpenTag:
    name: str
    offset: int
    argument: str


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram-flavoured HTML into (plain text, entities with UTF-16 offsets).

    Mirrors TDLib's parser and error messages (byte offsets are UTF-8). With ``strict``,
    a bare ``&`` outside attributes is an error (see the package docstring).
    """
    out: list[str] = []
    pos16 = 0
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    n = len(text)

    def at(i: int) -> int:
        return len(text[:i].encode("utf-8"))

    def skip_spaces(i: int) -> int:
        while i < n and text[i].isspace():
            i += 1
        return i

    i = 0
    while i < n:
        ch = text[i]
        if ch == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is not None:
                out.append(decoded[0])
                pos16 += utf16_len(decoded[0])
                i = decoded[1]
                continue
            if strict:
                raise EntityParseError(f'Unescaped "&" at byte offset {at(i)}')
        if ch != "<":
            out.append(ch)
            pos16 += utf16_len(ch)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n or text[i] != "/":
            j = i
            while j < n and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
            tag = text[i:j].lower()
            if tag not in _SUPPORTED_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {at(begin)}')
            i = j
            argument = ""
            while True:
                i = skip_spaces(i)
                if i >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] == ">":
                    break
                name_begin = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attr = text[name_begin:i].lower()
                if not attr:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {at(begin)}'
                    )
                i = skip_spaces(i)
                if i >= n or text[i] != "=":
                    if tag == "blockquote" and attr == "expandable":
                        argument = "expandable"
                        continue
                    raise EntityParseError(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{tag}" at byte offset {at(begin)}'
                    )
                i = skip_spaces(i + 1)
                if i >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if text[i] not in "'\"":
                    token_begin = i
                    while i < n and ((text[i].isascii() and text[i].isalnum()) or text[i] in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if i >= n or (not text[i].isspace() and text[i] != ">"):
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {at(token_begin)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    buf: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&" and (dec := _decode_html_entity(text, i)) is not None:
                            buf.append(dec[0])
                            i = dec[1]
                        else:
                            buf.append(text[i])
                            i += 1
                    if i >= n:
                        raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                    i += 1
                    value = "".join(buf)
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif (tag == "span" and attr == "class") or (
                    tag == "tg-emoji" and attr == "emoji-id"
                ):
                    argument = value
            i += 1
            if tag == "span" and argument != "tg-spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}'
                )
            stack.append(_OpenTag(tag, pos16, argument))
            continue
        # End tag.
        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {at(begin)}")
        i += 1
        j = i
        while j < n and not text[j].isspace() and text[j] != ">":
            j += 1
        end_name = text[i:j].lower()
        j = skip_spaces(j)
        if j >= n or text[j] != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {at(begin)}")
        expected = stack[-1].name
        if end_name and end_name != expected:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {at(begin)}, expected "</{expected}>", '
                f'found "</{end_name}>"'
            )
        i = j + 1
        opened = stack.pop()
        length = pos16 - opened.offset
        if length <= 0:
            continue
        entity: dict[str, Any] = {"offset": opened.offset, "length": length}
        if opened.name == "a":
            if not opened.argument:
                continue
            entity.update(type="text_link", url=opened.argument)
        elif opened.name == "pre":
            entity["type"] = "pre"
            if opened.argument:
                entity["language"] = opened.argument
        elif opened.name == "code" and stack and stack[-1].name == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            if opened.argument and not stack[-1].argument:
                stack[-1].argument = opened.argument
            continue
        elif opened.name == "blockquote":
            entity["type"] = "expandable_blockquote" if opened.argument else "blockquote"
        elif opened.name == "tg-emoji":
            if not opened.argument:
                continue
            entity.update(type="custom_emoji", custom_emoji_id=opened.argument)
        else:
            entity["type"] = _SIMPLE_ENTITY[opened.name]
        entities.append(entity)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def render_text(
    params: Mapping[str, Any], *, strict: bool
) -> tuple[str, list[dict[str, Any]], str]:
    """Validate text + parse_mode/entities → (plain text, entities, source text)."""
    source = params.get("text")
    if not isinstance(source, str) or not source.strip():
        raise bad("message text is empty")
    parse_mode = params.get("parse_mode")
    entities: list[dict[str, Any]] = []
    plain = source
    if isinstance(parse_mode, str) and parse_mode:
        mode = parse_mode.lower()
        if mode == "html":
            try:
                plain, entities = parse_html(source, strict=strict)
            except EntityParseError as exc:
                raise bad(f"can't parse entities: {exc}") from None
        elif mode not in ("markdown", "markdownv2"):
            raise bad(f"unsupported parse_mode {parse_mode!r}")
    elif isinstance(params.get("entities"), list):
        entities = list(params["entities"])
    if not plain.strip():
        raise bad("message text is empty")
    if utf16_len(plain) > TEXT_LIMIT:
        raise bad("message is too long")
    return plain, entities, source


def parse_reply_markup(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``reply_markup`` parameter, with inline keyboards checked as Telegram does."""
    markup = params.get("reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup  # reply keyboards etc.: stored as given, not validated
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad("can't parse reply keyboard markup JSON object")
    total = 0
    for row in rows:
        for button in row:
            total += 1
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad("can't parse inline keyboard button: Text must be a String")
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= (
                    CALLBACK_DATA_LIMIT
                ):
                    raise bad("BUTTON_DATA_INVALID")
            elif "url" in button:
                url = button["url"]
                if not isinstance(url, str) or not re.match(r"^(https?|tg)://\S+$", url):
                    raise bad("BUTTON_URL_INVALID")
            elif not (set(button) - {"text"}):
                raise bad(
                    "can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard"
                )
    if total > MAX_INLINE_BUTTONS:
        raise bad("reply markup is too long")
    return markup
