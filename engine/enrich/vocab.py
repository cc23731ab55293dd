"""Label vocabularies: bookrec's curated defaults (label -> short description) and a user's own
taxonomy read from a TOML or CSV file (`bookrec enrich --vocab FILE`), shared by the zero-shot
labeller (the label set it scores) and the LLM prompt (the labels it may answer with)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from engine.enrich.schema import normalize_label
from engine.errors import ConfigError

# Genre names include the sample generator's planted genres exactly (Mystery ... Poetry).
GENRE: dict[str, str] = {
    "Mystery": "detective mystery, a murder case, clues, suspects, alibi, a sleuth solves the crime",
    "Romance": "romance novel, love story, passion, a kiss, hearts, a bride and a wedding",
    "Science Fiction": "science fiction, starships, space travel, aliens, robots, galaxies, the future",
    "Fantasy": "fantasy, dragons, wizards, magic spells, swords, elves, kingdoms and quests",
    "Horror": "horror, ghosts, vampires, zombies, haunted houses, blood, terror and nightmares",
    "Biography": "biography, memoir, autobiography, the life story of a real person",
    "History": "history, historical account of wars, empires, battles, revolutions and past centuries",
    "Cooking": "cookbook, recipes, cooking, baking, kitchen, food, cuisine and meals",
    "Self-Help": "self-help, personal growth, success, habits, motivation, happiness, self-improvement",
    "Children's": "children's picture book, bedtime story, little animals, bunnies, ducklings, nursery",
    "Thriller": "thriller, spies, conspiracy, assassins, espionage, covert operations, suspense",
    "Poetry": "poetry, poems, verse, sonnets, odes, ballads, collected poems",
    "Literary Fiction": "literary fiction, a serious novel about characters, society and the human condition",
    "Historical Fiction": "historical fiction, a novel set in a past era, period drama",
    "Crime": "crime fiction, gangsters, police, heists, criminals and the underworld",
    "Adventure": "adventure story, expeditions, treasure, voyages, survival and exploration",
    "Humor": "humor, comedy, funny stories, jokes, satire and wit",
    "Classics": "classic literature, timeless great novels of the canon",
    "Young Adult": "young adult fiction, teenagers coming of age, high school",
    "Graphic Novel": "graphic novel, comics, manga and illustrated stories",
    "Drama": "drama, stage plays, theatre scripts and tragedy",
    "Short Stories": "short story collection, anthology of tales",
    "Western": "western, cowboys, the frontier, ranches, outlaws and sheriffs",
    "Dystopian": "dystopian fiction, totalitarian future societies and collapse",
    "Paranormal": "paranormal fiction, psychics, witches, the supernatural in modern life",
    "Chick Lit": "chick lit, women's fiction about careers, friendship and dating",
    "Philosophy": "philosophy, ethics, metaphysics, great thinkers and ideas",
    "Religion": "religion and spirituality, faith, the Bible, God, prayer and theology",
    "Science": "popular science, physics, biology, nature, evolution and the universe",
    "Psychology": "psychology, the mind, behavior, emotions and mental health",
    "Business": "business, management, leadership, marketing, money and investing",
    "Politics": "politics, government, elections, power and policy",
    "Travel": "travel writing and guidebooks, journeys, countries and cities",
    "Health": "health, fitness, diet, nutrition, medicine and wellness",
    "Art": "art, painting, photography, design and architecture",
    "Music": "music, musicians, bands, songs and composers",
    "Sports": "sports, athletes, football, baseball, golf and games",
    "Reference": "reference books, dictionaries, encyclopedias, atlases and handbooks",
    "Education": "education, study guides, textbooks and learning",
    "Computers": "computers, programming, software, the internet and technology",
    "Crafts": "crafts and hobbies, knitting, sewing, woodworking and gardening",
    "Parenting": "parenting, raising children, pregnancy and family life",
    "True Crime": "true crime, real murders, criminal investigations and trials",
    "War": "war fiction and military history, soldiers, battles and combat",
    "Nature": "nature writing, animals, wildlife, birds and the environment",
    "Spirituality": "spirituality, meditation, the soul, new age and mindfulness",
    # Shelves every real bookshop has (added with the bookcover30 yardstick, issue 12)
    "Christian": "Christian faith, the Bible, Jesus, church, devotionals and prayer",
    "Law": "law, legal practice, courts, contracts and lawyers",
    "Medicine": "medicine, clinical practice, nursing, anatomy and medical textbooks",
    "Engineering": "engineering, mechanics, electronics, construction, cars and aviation",
    "Mathematics": "mathematics, algebra, calculus, geometry and statistics",
    "Test Preparation": "test preparation and exam study guides: SAT, GRE, GMAT, practice tests",
    "Calendars": "a wall or desk calendar for the year with monthly pictures, a planner",
    "Entertainment": "entertainment, puzzles, games, television, movies and pop culture",
}

CATEGORY: dict[str, str] = {
    "Fiction": "fiction novel: mystery, crime, love story, romance, thriller, fantasy saga, science fiction, horror",
    "Non-Fiction": "non-fiction: factual history, politics, society, true events and real people",
    "Reference": "reference work: dictionary, encyclopedia, atlas, handbook",
    "Textbook": "school textbook for a course: lessons, exercises, exams, university",
    "How-To": "practical how-to guide: cookbook, recipes, self-help advice, manuals and tips",
    "Poetry": "poetry collection, poems and verse",
    "Memoir": "memoir or biography, the true life story of a real person",
    "Picture Book": "illustrated picture book for toddlers: little animals, bedtime, nursery",
    "Comics": "comic book, graphic novel or manga",
    "Essays": "essays, criticism and commentary",
    "Drama": "plays and scripts for the stage, theatre",
    "Anthology": "anthology of short stories by several writers",
}

THEME: dict[str, str] = {
    "Love": "love, romance and relationships",
    "Death": "death, grief and mortality",
    "War": "war, battles, soldiers and conflict",
    "Family": "family, parents, children and siblings",
    "Friendship": "friendship and loyalty between friends",
    "Coming Of Age": "growing up, adolescence and finding oneself",
    "Redemption": "redemption, forgiveness and second chances",
    "Revenge": "revenge, vengeance and retribution",
    "Justice": "justice, crime and punishment, law and courts",
    "Power": "power, ambition, politics and corruption",
    "Survival": "survival against danger, disaster and the wilderness",
    "Identity": "identity, self-discovery and who we are",
    "Good Vs Evil": "the struggle of good against evil, heroes and villains",
    "Betrayal": "betrayal, deception, lies and secrets",
    "Magic": "magic, spells, sorcery and enchantment",
    "Technology": "technology, machines, robots and artificial intelligence",
    "Space Exploration": "space exploration, planets, stars and galaxies",
    "Nature": "nature, animals, landscapes and the environment",
    "Faith": "faith, religion, belief and God",
    "Fear": "fear, terror, dread and the unknown",
    "Adventure": "adventure, quests, journeys and exploration",
    "Success": "success, achievement, wealth and ambition",
    "Health": "health, the body, healing and illness",
    "Food": "food, cooking, eating and hospitality",
    "History": "the past, historical events and memory",
    "Society": "society, class, culture and social change",
    "Freedom": "freedom, rebellion and oppression",
    "Mystery": "secrets, puzzles, crimes and investigation",
    "Loss": "loss, loneliness and heartbreak",
    "Hope": "hope, resilience and courage",
    "Childhood": "childhood, play, bedtime and small animals",
    "Art And Creativity": "art, creativity, writing, music and imagination",
}

TONE: dict[str, str] = {
    "Dark": "dark, grim, disturbing and bleak",
    "Uplifting": "uplifting, inspiring, hopeful and encouraging",
    "Informative": "informative, factual, explanatory and educational",
    "Humorous": "humorous, funny, comic and witty",
    "Suspenseful": "suspenseful, tense, thrilling and gripping",
    "Romantic": "romantic, tender, passionate and sweet",
    "Whimsical": "whimsical, playful, gentle and cute",
    "Serious": "serious, thoughtful and literary",
    "Melancholic": "melancholic, sad, wistful and nostalgic",
    "Adventurous": "adventurous, exciting, epic and bold",
    "Eerie": "eerie, creepy, spooky and frightening",
    "Lyrical": "lyrical, poetic and musical language",
    "Practical": "practical, hands-on, step-by-step instructions",
}

AUDIENCE: dict[str, str] = {
    "Children": "young children aged three to eight: picture books, bedtime stories, cute animals",
    "Middle Grade": "readers aged eight to twelve, school-age kids",
    "Young Adult": "teenagers and young adult readers, high school",
    "Adults": "adult readers of novels: thrillers, mysteries, romance, horror, crime and fantasy",
    "Academics": "scholars, researchers and university students",
    "Professionals": "professionals and practitioners at work, business readers",
    "Students": "students studying for school and exams",
    "Home Cooks": "home cooks and food lovers",
    "Parents": "parents and families",
    "Hobbyists": "hobbyists and enthusiasts of crafts, games and collecting",
    "General Readers": "anyone curious about history, science, biography and ideas: a broad audience",
    "Poetry Lovers": "readers of poetry and verse",
}

VOCABULARIES: dict[str, dict[str, str]] = {
    "genre": GENRE,
    "category": CATEGORY,
    "theme": THEME,
    "tone": TONE,
    "audience": AUDIENCE,
}


FIELDS = tuple(VOCABULARIES)
MAX_LABELS_PER_FIELD = 500  # a taxonomy, not a word list; bounds prompt size and scoring cost
MAX_LABEL_CHARS = 60  # as engine.enrich.schema.MAX_LABEL_CHARS
MAX_DESCRIPTION_CHARS = 300


@dataclass(frozen=True)
class Vocabulary:
    """Labels per field, each with a description ('' when none); `custom` names the fields a file set."""

    fields: Mapping[str, Mapping[str, str]]
    custom: tuple[str, ...] = ()
    source: str = "default"

    def labels(self, field: str) -> list[str]:
        """The field's labels in file order."""
        return list(self.fields[field])

    def description(self, field: str, label: str) -> str:
        """The label's description, '' when it has none."""
        return self.fields[field][label]

    def hash(self) -> str:
        """A short hash of every label and description (part of the zero-shot and LLM prompt versions)."""
        blob = json.dumps({f: dict(v) for f, v in self.fields.items()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @cached_property
    def _lookup(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for f in self.custom:
            table = out.setdefault(f, {})
            for label in self.fields[f]:
                table.setdefault(label_key(label), label)
        return out

    def allowed(self, field: str, label: str) -> str | None:
        """For a field the user's file sets: the vocabulary's own spelling of `label` when it is
        one of its labels (compared as `label_key` does), else None. Fields with bookrec's
        defaults take any label (the LLM prompt leaves them free): `label` itself."""
        if field not in self.custom:
            return label
        return self._lookup[field].get(label_key(label))


def label_key(label: str) -> str:
    """How an LLM label is matched to a vocabulary label: the reply's normalisation (spaces
    collapsed, ends trimmed of punctuation, title case), then case-folded. 'science  fiction.'
    matches 'Science Fiction'; 'Sci-Fi' or 'Science-Fiction' do not."""
    return normalize_label(label).casefold()


DEFAULT = Vocabulary(VOCABULARIES)


def label_texts(field: str, vocabulary: Vocabulary = DEFAULT) -> tuple[list[str], list[str]]:
    """(labels, texts to embed) for one field: 'Label: description' (or the bare label)."""
    labels = vocabulary.labels(field)
    return labels, [
        f"{label}: {desc}" if (desc := vocabulary.description(field, label)) else label
        for label in labels
    ]


def vocab_hash(vocabulary: Vocabulary = DEFAULT) -> str:
    """A short hash of every vocabulary, so edits re-label books (part of the prompt version)."""
    return vocabulary.hash()


def load_vocab(path: str | Path) -> Vocabulary:
    """A user's taxonomy from TOML or CSV; fields the file does not name keep bookrec's defaults.

    TOML: one table per field, `label = "description"` (or `label = {description = "..."}`, or a
    list of labels without descriptions: `genre = ["Mystery", "Poetry"]`).
    CSV: a header with `field,label` and optionally `description`, one label per row.
    Anything malformed raises one ConfigError naming the file (and line or key).
    """
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise ConfigError(
            "vocabulary file not found", where=where, hint="Pass a .toml or .csv file"
        )
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            "vocabulary file is not UTF-8 text", where=where, hint="Save it as UTF-8"
        ) from None
    suffix = p.suffix.lower()
    if suffix == ".toml":
        parsed = _from_toml(text, where)
    elif suffix in (".csv", ".tsv", ".txt"):
        parsed = _from_csv(text, where, "\t" if suffix == ".tsv" else None)
    else:
        raise ConfigError(
            f"unknown vocabulary file type {p.suffix or '(none)'!r}",
            where=where,
            hint="Use a .toml or .csv file",
        )
    if not parsed:
        raise ConfigError(
            "vocabulary file holds no labels",
            where=where,
            hint=f"Give labels for at least one of: {', '.join(FIELDS)}",
        )
    fields = {f: parsed.get(f, VOCABULARIES[f]) for f in FIELDS}
    return Vocabulary(fields, tuple(f for f in FIELDS if f in parsed), source=p.name)


def _field_name(raw: object, where: str) -> str:
    name = str(raw).strip().lower()
    if name not in VOCABULARIES:
        raise ConfigError(
            f"unknown field {str(raw)!r} in vocabulary",
            where=where,
            hint=f"Fields: {', '.join(FIELDS)}",
        )
    return name


def _add(
    out: dict[str, dict[str, str]], field: str, label: object, desc: object, where: str
) -> None:
    if not isinstance(label, str) or not label.strip():
        raise ConfigError("empty label in vocabulary", where=where, hint="Every label needs a name")
    if desc is None:
        desc = ""
    if not isinstance(desc, str):
        raise ConfigError(
            f"description of {label!r} is not text", where=where, hint='Write label = "description"'
        )
    name = " ".join(label.split())
    if len(name) > MAX_LABEL_CHARS:
        raise ConfigError(
            f"label {name[:40]!r}... is longer than {MAX_LABEL_CHARS} characters",
            where=where,
            hint="Labels are short names; put the rest in the description",
        )
    labels = out.setdefault(field, {})
    if name.lower() in {k.lower() for k in labels}:
        raise ConfigError(
            f"label {name!r} appears twice in field {field}", where=where, hint="Keep one of them"
        )
    if len(labels) >= MAX_LABELS_PER_FIELD:
        raise ConfigError(
            f"more than {MAX_LABELS_PER_FIELD} labels in field {field}",
            where=where,
            hint="Merge labels into fewer shelves",
        )
    labels[name] = " ".join(desc.split())[:MAX_DESCRIPTION_CHARS]


def _from_toml(text: str, where: str) -> dict[str, dict[str, str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"vocabulary file is not valid TOML: {exc}", where=where, hint="Fix the TOML syntax"
        ) from None
    out: dict[str, dict[str, str]] = {}
    for raw_field, value in data.items():
        field = _field_name(raw_field, where)
        at = f"{where}: [{raw_field}]"
        if isinstance(value, list):
            items = [(label, "") for label in value]
        elif isinstance(value, dict):
            items = []
            for label, desc in value.items():
                if isinstance(desc, dict):
                    unknown = set(desc) - {"description"}
                    if unknown:
                        raise ConfigError(
                            f"unknown key {sorted(unknown)[0]!r} for label {label!r}",
                            where=at,
                            hint="A label table holds only description",
                        )
                    desc = desc.get("description", "")
                items.append((label, desc))
        else:
            raise ConfigError(
                f"field {raw_field!r} must be a table of labels or a list",
                where=where,
                hint=f'Write [{field}] then label = "description" lines',
            )
        for label, desc in items:
            _add(out, field, label, desc, at)
        if not items:
            raise ConfigError(
                f"field {raw_field!r} has no labels", where=where, hint="Add labels or drop it"
            )
    return out


def _from_csv(text: str, where: str, delimiter: str | None) -> dict[str, dict[str, str]]:
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(
            "vocabulary CSV is empty", where=where, hint="Start with a field,label header"
        )
    if delimiter is None:
        delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    if "field" not in header or "label" not in header:
        raise ConfigError(
            "vocabulary CSV needs a header with field and label columns (description optional)",
            where=f"{where}: line 1",
            hint="e.g. field,label,description",
        )
    unknown = [h for h in header if h not in ("field", "label", "description")]
    if unknown:
        raise ConfigError(
            f"unknown column {unknown[0]!r} in vocabulary CSV",
            where=f"{where}: line 1",
            hint="Columns: field, label, description",
        )
    i_field, i_label = header.index("field"), header.index("label")
    i_desc = header.index("description") if "description" in header else None
    out: dict[str, dict[str, str]] = {}
    for row in reader:
        at = f"{where}: line {reader.line_num}"
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header) or len(row) < 2:
            raise ConfigError(
                f"expected {len(header)} columns, found {len(row)}",
                where=at,
                hint="Quote values that hold the delimiter",
            )
        row = row + [""] * (len(header) - len(row))
        field = _field_name(row[i_field], at)
        _add(out, field, row[i_label], row[i_desc] if i_desc is not None else "", at)
    return out
