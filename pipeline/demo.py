"""The embedded `demo` dataset: synthetic video-game purchases, deterministic from a seed.

Why synthetic: the quickstart and most tests need data without a download or a licence.
The structure is there for both stages to learn:

- titles carry meaning an LLM can use: franchises with numbered sequels on a platform
  ("Star Blaster 3 (PS4)"), the genre readable from the franchise name;
- sequences carry co-occurrence an ID model can use: a user keeps to one platform and
  one or two favourite genres and tends to play a franchise in sequel order, with
  popularity-driven noise in between;
- timestamps increase along every sequence, so the BIGRec time split applies.

    >>> raw = make_demo(seed=0, n_users=50)
    >>> raw.items["title"].iloc[0], raw.has_timestamps
    ('Night Siege (Xbox One)', True)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.readers.base import RawData

PLATFORMS = ("PS4", "Xbox One", "Switch", "PC")
PLATFORM_SHARE = (0.35, 0.25, 0.25, 0.15)
# genre -> (first words, second words) of franchise names; the second word tells the genre.
GENRES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Shooter": (("Star", "Iron", "Night", "Void", "Steel"), ("Blaster", "Strike", "Trooper", "Siege")),
    "Racing": (("Turbo", "Nitro", "Asphalt", "Drift"), ("Rally", "Racer", "Speedway", "Rush")),
    "RPG": (("Dragon", "Crystal", "Rune", "Ember"), ("Saga", "Chronicles", "Legends", "Quest")),
    "Sports": (("Pro", "Ultimate", "Super", "World"), ("Soccer", "Tennis", "Golf", "Hockey")),
    "Puzzle": (("Block", "Gem", "Mind", "Tile"), ("Puzzle", "Match", "Logic", "Tangle")),
    "Platformer": (("Pixel", "Bouncy", "Jumping", "Rocket"), ("Hero", "Fox", "Jack", "Kid")),
    "Horror": (("Dark", "Silent", "Haunted", "Dead"), ("Manor", "Signal", "Harbor", "Woods")),
    "Strategy": (("Empire", "Galactic", "Kingdom", "Warring"), ("Tactics", "Commander", "Conquest", "Lords")),
}
START_TIME = 1_420_070_400  # 2015-01-01 UTC
DAY = 86_400


def make_items(rng: np.random.Generator, franchises_per_genre: int) -> pd.DataFrame:
    """Franchises of 2-5 numbered entries, each entry on 1-2 of the franchise's platforms."""
    rows = []
    for genre, (firsts, seconds) in GENRES.items():
        names = [f"{a} {b}" for a in firsts for b in seconds]
        picked = rng.choice(len(names), size=min(franchises_per_genre, len(names)), replace=False)
        for name_idx in picked:
            name = names[name_idx]
            home = rng.choice(len(PLATFORMS), size=2, replace=False, p=PLATFORM_SHARE)
            for entry in range(1, int(rng.integers(2, 6)) + 1):
                platforms = [home[0]] if rng.random() < 0.6 else list(home)
                for p in platforms:
                    suffix = "" if entry == 1 else f" {entry}"
                    rows.append((f"{name}{suffix} ({PLATFORMS[p]})", genre, PLATFORMS[p], name, entry))
    items = pd.DataFrame(rows, columns=["title", "genre", "platform", "franchise", "entry"])
    items.insert(0, "source_id", [f"G{i:04d}" for i in range(len(items))])
    return items


def _popularity(rng: np.random.Generator, items: pd.DataFrame) -> np.ndarray:
    """Zipf-like popularity over a random order, first entries of a franchise more popular."""
    rank = rng.permutation(len(items)) + 1
    pop = rank.astype(float) ** -0.9 * np.where(items["entry"].to_numpy() == 1, 2.0, 1.0)
    return pop / pop.sum()


def _user_sequence(rng, cat, by_key, by_genre, platform, genres, length):
    """One user's item sequence: sequel chains in favourite genres, popularity noise.

    `cat` holds numpy columns of the catalogue (platform, franchise, entry, cumulative
    popularity); genres[0] is picked 70% of the time, genres[1] 30%.
    """
    platforms, franchises, entries, cum_pop = cat
    seq: list[int] = []
    seen: set[int] = set()
    franchise, entry = None, 0

    def pick(cands):
        """The user's own-platform version; another platform's only half of the time."""
        cands = [c for c in cands if c not in seen]
        own = [c for c in cands if platforms[c] == platform]
        if own:
            return own[0]
        return cands[0] if cands and rng.random() < 0.5 else None

    while len(seq) < length:
        r, item = rng.random(), None
        if franchise is not None and r < 0.65:  # the next sequel of the current franchise
            item = pick(by_key.get((franchise, entry + 1), []))
        if item is None and r < 0.9:  # (re)start a franchise of a favourite genre (also when a chain ends)
            genre = genres[0] if rng.random() < 0.7 else genres[1]
            names = by_genre.get((genre, platform)) or by_genre[genre]  # prefer franchises on the platform
            franchise = names[rng.integers(len(names))]
            entry = 0 if rng.random() < 0.7 else int(rng.integers(0, 2))
            item = pick(by_key.get((franchise, entry + 1), []))
        if item is None:  # popularity noise, mostly on the user's platform
            item = int(np.searchsorted(cum_pop, rng.random() * cum_pop[-1]))
            if item in seen or (platforms[item] != platform and rng.random() < 0.7):
                continue
            franchise, entry = franchises[item], int(entries[item]) - 1
        seq.append(item)
        seen.add(item)
        entry += 1
    return seq


def make_demo(
    seed: int = 0,
    n_users: int = 2000,
    franchises_per_genre: int = 8,
    min_len: int = 5,
    mean_extra_len: float = 8.0,
    max_len: int = 40,
) -> RawData:
    """Generate the demo dataset (about 300 items; lengths `min_len + Poisson(mean_extra_len)`)."""
    rng = np.random.default_rng(seed)
    items = make_items(rng, franchises_per_genre)
    cat = (*(items[c].to_numpy() for c in ("platform", "franchise", "entry")), np.cumsum(_popularity(rng, items)))
    by_key: dict[tuple[str, int], list[int]] = {}
    for i, (f, e) in enumerate(zip(items.franchise, items.entry)):
        by_key.setdefault((f, int(e)), []).append(i)
    by_genre: dict = {g: sorted(set(items.franchise[items.genre == g])) for g in GENRES}
    by_genre.update({(g, p): sorted(set(items.franchise[(items.genre == g) & (items.platform == p)]))
                     for g in GENRES for p in PLATFORMS})
    genre_names = list(GENRES)
    platform_cum = np.cumsum(PLATFORM_SHARE) / sum(PLATFORM_SHARE)

    users, item_col, times = [], [], []
    for u in range(n_users):
        platform = PLATFORMS[int(np.searchsorted(platform_cum, rng.random()))]
        genres = [genre_names[g] for g in rng.choice(len(genre_names), size=2, replace=False)]
        length = min(max_len, min_len + int(rng.poisson(mean_extra_len)))
        seq = _user_sequence(rng, cat, by_key, by_genre, platform, genres, length)
        start = START_TIME + int(rng.integers(0, 3 * 365 * DAY))
        gaps = rng.exponential(20 * DAY, size=len(seq)).astype(np.int64) + 3600
        users += [f"u{u:05d}"] * len(seq)
        item_col += seq
        times.append(start + np.cumsum(gaps))
    ts = np.concatenate(times)
    interactions = pd.DataFrame(
        {"user_id": users, "source_id": items["source_id"].to_numpy()[item_col], "order": ts, "timestamp": ts}
    )
    return RawData(items=items, interactions=interactions, sources=[f"demo(seed={seed})"],
                   notes={"demo": {"seed": seed, "n_users": n_users, "franchises_per_genre": franchises_per_genre}})
