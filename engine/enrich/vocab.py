"""Curated label vocabularies for the offline zero-shot labeller: label -> short description."""

from __future__ import annotations

import hashlib
import json

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


def label_texts(field: str) -> tuple[list[str], list[str]]:
    """(labels, texts to embed) for one field: 'Label: description'."""
    vocab = VOCABULARIES[field]
    labels = list(vocab)
    return labels, [f"{label}: {desc}" for label, desc in vocab.items()]


def vocab_hash() -> str:
    """A short hash of every vocabulary, so edits re-label books (part of the prompt version)."""
    return hashlib.sha256(json.dumps(VOCABULARIES, sort_keys=True).encode()).hexdigest()[:8]
