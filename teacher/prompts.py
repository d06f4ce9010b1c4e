"""BIGRec's Alpaca-style prompts (METHOD §2.1), with per-dataset domain words.

The prompt ends with the response's opening quote, so the model only has to write
`Title"` (+ EOS): fine-tuning labels and generation see exactly the same prompt tokens,
and generation can stop at the first quote.

    >>> builder = PromptBuilder(["Star Blaster (PS4)", "Turbo Rally (PC)"], PromptConfig(domain="games"), max_history=10)
    >>> print(builder.prompt([0, 1]).splitlines()[-3])
    The user has played the following video games before: "Star Blaster (PS4)", "Turbo Rally (PC)"
    >>> builder.response(1)
    'Turbo Rally (PC)"'
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from teacher.config import PromptConfig

RESPONSE_OPEN = '"'
RESPONSE_CLOSE = '"'

# domain -> (things, thing, verb)
DOMAINS: dict[str, tuple[str, str, str]] = {
    "games": ("video games", "video game", "played"),
    "movies": ("movies", "movie", "watched"),
    "toys": ("toys", "toy", "bought"),
    "music": ("music artists", "music artist", "listened to"),
    "items": ("items", "item", "interacted with"),
}
# substrings of a dataset's reader / sources -> domain (first match wins)
DOMAIN_HINTS = (("demo", "games"), ("game", "games"), ("toy", "toys"), ("movielens", "movies"), ("ml-", "movies"),
                ("movie", "movies"), ("lastfm", "music"), ("music", "music"))


@dataclass(frozen=True)
class DomainWords:
    things: str
    thing: str
    verb: str


def detect_domain(manifest: dict) -> str:
    """Guess the domain from the dataset manifest (reader name, source paths); 'items' if unknown."""
    text = " ".join([str(manifest.get("reader", ""))] + [str(s) for s in manifest.get("sources", [])]).lower()
    for hint, domain in DOMAIN_HINTS:
        if hint in text:
            return domain
    return "items"


def domain_words(config: PromptConfig, manifest: dict | None = None) -> DomainWords:
    name = detect_domain(manifest or {}) if config.domain == "auto" else config.domain
    if name not in DOMAINS:
        raise ValueError(f"unknown prompt domain {name!r}; use one of {sorted(DOMAINS)} or set things/thing/verb")
    things, thing, verb = DOMAINS[name]
    return DomainWords(config.things or things, config.thing or thing, config.verb or verb)


def parse_generation(text: str) -> str:
    """The generated title: everything before the closing quote, stripped (the whole text if none)."""
    return text.split(RESPONSE_CLOSE, 1)[0].strip()


class PromptBuilder:
    """Prompts and responses for samples of one dataset (titles indexed by item id)."""

    def __init__(self, titles: Sequence[str], config: PromptConfig, max_history: int, manifest: dict | None = None):
        self.config = config
        self.max_history = config.max_history or max_history
        self.words = domain_words(config, manifest)
        self.titles = [t[: config.max_title_chars].strip() for t in titles]
        self.instruction = config.instruction.format(things=self.words.things, thing=self.words.thing, verb=self.words.verb)

    @property
    def hash(self) -> str:
        """Hash of everything that shapes the prompt text (goes into the teacher manifest)."""
        c = self.config
        blob = json.dumps([c.template, c.instruction, c.input, self.words.__dict__, self.max_history,
                           c.max_title_chars, RESPONSE_OPEN, RESPONSE_CLOSE], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def prompt(self, history: Sequence[int]) -> str:
        recent = list(history)[-self.max_history:] if len(history) else []
        quoted = ", ".join(f'"{self.titles[i]}"' for i in recent)
        text_input = self.config.input.format(verb=self.words.verb, things=self.words.things, thing=self.words.thing,
                                              history=quoted)
        return self.config.template.format(instruction=self.instruction, input=text_input) + RESPONSE_OPEN

    def response(self, target: int) -> str:
        return self.titles[target] + RESPONSE_CLOSE

    def prompts(self, samples: pd.DataFrame) -> list[str]:
        return [self.prompt(h) for h in samples["history"]]

    def responses(self, samples: pd.DataFrame) -> list[str]:
        return [self.response(int(t)) for t in samples["target"]]
