"""What the owner wrote about a lead, read into facts a message can use.

Owners type short notes ("Met at SaaStr; evaluating outbound tooling for Q3", "Bob
from Acme wants a demo") or forward the prospect's own words ("Can you send me
pricing?"). The built-in planner has no model, so it recognises a few common shapes —
where they met, who referred them, what they need, a question they asked, a promise —
and rewrites them addressed to the prospect. Anything else is kept as a plain note.
Deterministic and forgiving: an unrecognised note never fails a plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from activities.plan_brief import LeadBrief
from activities.plan_repair import truncate

__all__ = ["LeadFacts", "read_lead"]

_PHRASE_MAX = 140
_NAME_MAX = 60
_STRIP = " \t\n,;:.!-–—\"'“”«»"

# Sentences end at ; or a newline, or at . ! ? followed by a space (not "v2.0").
_SENTENCE = re.compile(r"[;\n]+|(?<=[.!?])\s+")
_NEGATED = re.compile(r"\b(not|no longer|never)\s*$|n't\s*$", re.IGNORECASE)

_MET = re.compile(
    r"\b(?P<verb>met|spoke|talked|chatted|connected)\b(?:\s+\S+){0,4}?\s+"
    r"(?P<place>(?:at|during|on|in|over|through|via)\s+[^,]+)",
    re.IGNORECASE,
)
_REFERRED = re.compile(
    r"\b(?:referred|introduced|recommended)(?:\s+to\s+(?:me|us))?\s+by\s+(?P<who>[^,]+)"
    r"|\bintro(?:duction)?\s+(?:from|via|through|by)\s+(?P<who2>[^,]+)",
    re.IGNORECASE,
)
_PROMISED = re.compile(
    r"\b(?:promised|agreed|offered)\s+to\s+(?:send|share)\s+(?:(?:him|her|them)\s+)?(?P<what>[^,]+)",
    re.IGNORECASE,
)
# Owner's verb → the same need said to the prospect.
_NEEDS: list[tuple[str, str]] = [
    (r"evaluating", "you're evaluating"),
    (r"looking\s+for", "you're looking for"),
    (r"looking\s+(?:at|into)", "you're looking into"),
    (r"exploring", "you're exploring"),
    (r"considering", "you're considering"),
    (r"comparing", "you're comparing"),
    (r"interested\s+in", "you're interested in"),
    (r"curious\s+about", "you're curious about"),
    (r"struggling\s+with", "you're struggling with"),
    (r"replacing", "you're replacing"),
    (r"(?:switching|moving|migrating)\s+to", "you're moving to"),
    (r"hiring", "you're hiring"),
    (r"planning", "you're planning"),
    (r"trying\s+to", "you're trying to"),
    (r"working\s+on", "you're working on"),
    (r"asked\s+about", "you asked about"),
    (r"asked\s+for", "you asked for"),
    (r"requested", "you asked for"),
    (r"would\s+like", "you'd like"),
    (r"wants?", "you'd like"),
    (r"needs?", "you need"),
]
_NEED = re.compile(
    r"\b(?:" + "|".join(f"(?P<v{i}>{verb})" for i, (verb, _) in enumerate(_NEEDS)) + r")\s+",
    re.IGNORECASE,
)
# "Bob from Acme wants a demo": a company the owner named in passing.
_FROM_COMPANY = re.compile(
    r"^(?:[A-Z][\w'’-]*\s+){1,2}from\s+(?P<company>[A-Z][\w&'’.-]*(?:\s+[A-Z][\w&'’.-]*){0,2})"
)
_CLAUSE_END = re.compile(r"\s+(?:but|although|though|because|[-–—])\s+", re.IGNORECASE)
_PLACE_END = re.compile(
    r"\s+(?:and|but|where|who|which|because|[-–—])\s+|\s+(?:she|he|they)\s", re.IGNORECASE
)
_THIRD_PERSON = re.compile(r"\b(?:he|she|they|his|her|their|him|them)\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(?:i|me|my|we|us|our|you|your)\b", re.IGNORECASE)


@dataclass(frozen=True)
class LeadFacts:
    """A lead as messages use it; every field may be empty."""

    full_name: str
    first_name: str
    company: str
    title: str
    # The owner's notes, whitespace-collapsed (for text the owner reads, not the prospect).
    notes: str
    # "at SaaStr" / "on the phone", and whether they met or only talked.
    place: str = ""
    met_in_person: bool = True
    referrer: str = ""
    # Said to the prospect: "you're evaluating outbound tooling for Q3".
    need: str = ""
    # The prospect's own question, verbatim: "Can you send me pricing?"
    question: str = ""
    # What the owner promised to send: "the deck".
    promise: str = ""
    # The notes' first sentence when none of the above was recognised.
    note: str = ""

    @property
    def knows_context(self) -> bool:
        return bool(self.place or self.referrer or self.need or self.question or self.promise)


def _clean(text: str, limit: int = _PHRASE_MAX, strip: str = _STRIP) -> str:
    return truncate(" ".join(text.split()).strip(strip), limit).strip(strip)


def _name(text: str) -> str:
    """A name keeps its dots ("Acme Inc.", "S.L.")."""
    return _clean(text, _NAME_MAX, " \t\n,;:")


def _clause(text: str, *, place: bool = False) -> str:
    """The first clause only: "at SaaStr and she wants a demo" → "at SaaStr"."""
    words = _PLACE_END if place else _CLAUSE_END
    return words.split(text, maxsplit=1)[0]


def _to_prospect(text: str) -> str:
    """Third person about the prospect → second person to them ("their team" → "your team")."""

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower()
        if lower in {"their", "his"}:
            out = "your"
        elif lower == "her":  # "her team" → "your team", "email her" → "email you"
            rest = match.string[match.end() :]
            out = "your" if re.match(r"\s+\w", rest) else "you"
        else:  # them, him
            out = "you"
        return out.capitalize() if word[0].isupper() else out

    return re.sub(r"\b(?:their|his|her|them|him)\b", swap, text, flags=re.IGNORECASE)


def _sentences(notes: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(notes) if s.strip(_STRIP)]


def _need(sentence: str) -> str:
    for match in _NEED.finditer(sentence):
        if _NEGATED.search(sentence[: match.start()]):
            continue  # "not interested in X" is not a need
        said = next(_NEEDS[int(k[1:])][1] for k, v in match.groupdict().items() if v)
        what = _clean(_to_prospect(_clause(sentence[match.end() :].split(",")[0])))
        if what:
            return f"{said} {what}"
    return ""


def _question(sentence: str) -> str:
    """A question in the prospect's own words (a forwarded message), not the owner's memo."""
    text = " ".join(sentence.split())
    if not text.endswith("?") or len(text.split()) < 3 or len(text) > _PHRASE_MAX:
        return ""
    if _THIRD_PERSON.search(text) or not _FIRST_PERSON.search(text):
        return ""
    return text


def read_lead(brief: LeadBrief) -> LeadFacts:
    """The brief's names and notes, with the recognised parts of the notes pulled out."""
    full_name = _name(brief.prospect_name)
    first_name = truncate(full_name.split(" ")[0], 30) if full_name else ""
    company = _name(brief.prospect_company)
    notes = " ".join(brief.original_context.split())
    found: dict[str, str] = {}
    met_in_person = True
    for sentence in _sentences(brief.original_context):
        if not company and (m := _FROM_COMPANY.search(sentence)):
            company = _clean(m.group("company"), _NAME_MAX)
        if "place" not in found and (m := _MET.search(sentence)):
            found["place"] = _clean(_clause(m.group("place"), place=True))
            met_in_person = m.group("verb").lower() == "met"
        if "referrer" not in found and (m := _REFERRED.search(sentence)):
            who = _clean(_clause(m.group("who") or m.group("who2"), place=True), _NAME_MAX)
            found["referrer"] = who[:1].upper() + who[1:]
        if "promise" not in found and (m := _PROMISED.search(sentence)):
            found["promise"] = _clean(_to_prospect(_clause(m.group("what"))))
        if "need" not in found and (need := _need(sentence)):
            found["need"] = need
        if "question" not in found and (question := _question(sentence)):
            found["question"] = question
    note = ""
    if not found:
        # An owner's memo question ("decision maker?") is not for the prospect's eyes.
        statements = [s for s in _sentences(brief.original_context) if not s.endswith("?")]
        note = _clean(statements[0]) if statements else ""
    return LeadFacts(
        full_name=full_name,
        first_name=first_name,
        company=company,
        title=_name(brief.prospect_title),
        notes=notes,
        met_in_person=met_in_person,
        note=note,
        **{k: v for k, v in found.items() if v},
    )
