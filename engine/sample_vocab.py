"""Curated word lists for engine.sample: genre vocabularies, neutral names, real locations."""

from __future__ import annotations

# Hand-wrapped word tables read better than one word per line.
# fmt: off

# Planted genres, exact names (a shared contract: truth files, enrichment checks, tests).
GENRES: tuple[str, ...] = (
    "Mystery", "Romance", "Science Fiction", "Fantasy", "Horror", "Biography", "History", "Cooking",
    "Self-Help", "Children's", "Thriller", "Poetry",
)

# Share of books per genre (BX is fiction-heavy: mystery and romance paperbacks dominate).
GENRE_BOOK_WEIGHTS: tuple[float, ...] = (14, 14, 8, 9, 6, 7, 8, 6, 7, 8, 9, 4)

# Placeholders: {a} adjective, {n} / {m} genre nouns, {p} place, {f} first name, {l} last name,
# {k} a small number, {y} a year. Titles carry genre words so an offline zero-shot labeller has a
# signal; a few templates hold commas, quotes and series parentheticals like real BX titles.
VOCAB: dict[str, dict[str, tuple[str, ...]]] = {
    "Mystery": {
        "adj": (
            "Silent", "Missing", "Hidden", "Locked", "Poisoned", "Stolen", "Final", "Perfect", "Cold", "Quiet",
        ),
        "noun": (
            "Murder", "Detective", "Clue", "Alibi", "Suspect", "Inspector", "Corpse", "Witness", "Case",
            "Sleuth", "Verdict", "Motive", "Inquest", "Body", "Culprit", "Homicide",
        ),
        "tpl": (
            "Murder at {p}", "The {a} {n}", "The {n} of {p}", "A {n} for {f} {l}", "Death and the {n}",
            "The {a} Clue", "{n} in {p} ({f} {l} Mysteries, No. {k})", "The \"{a}\" Alibi",
            "The Case of the {a} {m}", "Murder, {n} and {p}",
        ),
        "pub_a": (
            "Crimson", "Midnight", "Scarlet", "Blackstone", "Keyhole", "Magnifier", "Gaslight", "Foggy Lane",
        ),
        "pub_b": (
            "Dagger", "Clue", "Sleuth", "Mystery", "Detective", "Casebook",
        ),
    },
    "Romance": {
        "adj": (
            "Tender", "Secret", "Passionate", "Sweet", "Stolen", "Forbidden", "Summer", "Wild", "Reckless",
            "True",
        ),
        "noun": (
            "Love", "Heart", "Kiss", "Bride", "Desire", "Passion", "Wedding", "Lover", "Romance", "Embrace",
            "Sweetheart", "Affair", "Valentine", "Promise", "Groom", "Duke",
        ),
        "tpl": (
            "The {a} {n}", "A {n} in {p}", "{a} {n}", "The {n}'s {m}", "Love in {p}", "Kiss of the {m}",
            "A Bride for {f}", "{a} Hearts ({p} Brides, No. {k})", "Her {a} {n}", "Hearts, Lace and {n}",
        ),
        "pub_a": (
            "Rosewood", "Silk", "Velvet", "Amour", "Heartsong", "Blush", "Moonlit", "Lace",
        ),
        "pub_b": (
            "Romance", "Hearts", "Love Stories", "Kisses", "Rose", "Passion",
        ),
    },
    "Science Fiction": {
        "adj": (
            "Galactic", "Quantum", "Orbital", "Stellar", "Robotic", "Alien", "Cosmic", "Android", "Lunar",
            "Martian",
        ),
        "noun": (
            "Starship", "Galaxy", "Robot", "Planet", "Android", "Spaceship", "Cyborg", "Colony", "Nebula",
            "Asteroid", "Starport", "Empire", "Alien", "Warp", "Orbit", "Cosmos",
        ),
        "tpl": (
            "The {a} {n}", "{n} Rising", "Beyond the {n}", "The Last {n}", "{a} {n}: Book {k}",
            "Station {p}: A Space Novel", "Empire of the {a} {m}", "The {n} Protocol",
            "{a} Dawn ({n} Chronicles, No. {k})", "Stars, Steel and the {n}",
        ),
        "pub_a": (
            "Nebula", "Orbit", "Starlight", "Galaxy", "Rocket", "Photon", "Quasar", "Ion Drive",
        ),
        "pub_b": (
            "Science Fiction", "Starship", "Galactic", "Future Worlds", "Spaceways", "Robot",
        ),
    },
    "Fantasy": {
        "adj": (
            "Enchanted", "Dark", "Elven", "Ancient", "Magic", "Fabled", "Cursed", "Golden", "Mystic", "Shadow",
        ),
        "noun": (
            "Dragon", "Wizard", "Sorcerer", "Sword", "Kingdom", "Elf", "Throne", "Spell", "Quest", "Sorceress",
            "Crown", "Realm", "Witch", "Prophecy", "Enchantment", "Unicorn",
        ),
        "tpl": (
            "The {a} {n}", "The {n} of {p}", "{n}'s Quest", "The Last {n}", "Realm of the {a} {m}",
            "The {n} and the {m}", "{a} {n} (The {m} Saga, Book {k})", "Sword, Spell and {n}", "The {n} King",
            "Legend of the {n}",
        ),
        "pub_a": (
            "Dragonfire", "Spellbound", "Runestone", "Wyvern", "Elvenhome", "Griffin", "Silver Wand", "Tower",
        ),
        "pub_b": (
            "Fantasy", "Dragon", "Wizard", "Realms", "Magic", "Legends",
        ),
    },
    "Horror": {
        "adj": (
            "Haunted", "Bloody", "Dead", "Unholy", "Rotting", "Screaming", "Hungry", "Cursed", "Evil",
            "Dreadful",
        ),
        "noun": (
            "Ghost", "Vampire", "Nightmare", "Demon", "Zombie", "Terror", "Haunting", "Blood", "Crypt", "Fear",
            "Werewolf", "Grave", "Coffin", "Horror", "Scream", "Phantom",
        ),
        "tpl": (
            "The {a} {n}", "{n} House", "The {n} of {p}", "Night of the {n}", "{a} {m}", "The {n} Returns",
            "Tales of {n} and {m}", "{n} in the Cellar", "The {a} Crypt", "Blood, Bones and {n}",
        ),
        "pub_a": (
            "Grave", "Coffin", "Bloodmoon", "Nightshade", "Black Cat", "Dread", "Raven", "Crypt",
        ),
        "pub_b": (
            "Horror", "Nightmare", "Terror", "Shadows", "Dark Tales", "Fright",
        ),
    },
    "Biography": {
        "adj": (
            "Remarkable", "Extraordinary", "Unlikely", "True", "Private", "Early", "Complete", "Untold",
            "Public", "Brave",
        ),
        "noun": (
            "Life", "Memoir", "Biography", "Autobiography", "Portrait", "Diaries", "Letters", "Journey",
            "Years", "Recollections", "Story", "Reminiscences", "Legacy", "Confessions", "Chronicle",
            "Journals",
        ),
        "tpl": (
            "{f} {l}: A {n}", "The {a} {n} of {f} {l}", "My {n}: {f} {l}", "{f} {l}: A Biography",
            "A {n} in {p}: The {m} of {f} {l}", "Memoirs of {f} {l}", "The {a} Years: A Memoir",
            "{f}: My Life, My Story", "An {n} of {f} {l}", "Growing Up in {p}: A Memoir",
        ),
        "pub_a": (
            "Memoir", "Lifeline", "Portrait", "Keepsake", "Quill", "Legacy", "True Lives", "Witness",
        ),
        "pub_b": (
            "Biography", "Memoirs", "Lives", "Life Stories", "Autobiography", "Profiles",
        ),
    },
    "History": {
        "adj": (
            "Great", "Forgotten", "Medieval", "Ancient", "Civil", "Imperial", "Victorian", "Roman", "Colonial",
            "Revolutionary",
        ),
        "noun": (
            "War", "Empire", "Revolution", "Battle", "Century", "Dynasty", "Conquest", "Civilization", "Siege",
            "Kingdom", "Republic", "Army", "Crusade", "Treaty", "Era", "History",
        ),
        "tpl": (
            "A History of {p}", "The {a} {n}", "The {n} of {k}", "{a} {n}: A History",
            "The Rise and Fall of the {a} {m}", "The {n} for {p}", "The {a} Age: {n} and {m}, 1700-{y}",
            "{n}, Empire and Trade", "Soldiers of the {a} {n}", "The {n} That Changed History",
        ),
        "pub_a": (
            "Chronicle", "Heritage", "Archive", "Annals", "Centurion", "Parchment", "Monument", "Epoch",
        ),
        "pub_b": (
            "History", "Historical", "Heritage", "Military History", "Past", "Empire",
        ),
    },
    "Cooking": {
        "adj": (
            "Easy", "Simple", "Healthy", "Italian", "Homemade", "Vegetarian", "Quick", "Classic", "Delicious",
            "Fresh",
        ),
        "noun": (
            "Recipes", "Kitchen", "Baking", "Cookbook", "Cooking", "Desserts", "Soups", "Breads", "Grilling",
            "Pasta", "Menus", "Meals", "Cakes", "Salads", "Cuisine", "Chef",
        ),
        "tpl": (
            "The {a} {n} Cookbook", "{a} {n}", "{n} from the {p} Kitchen", "The {a} Kitchen",
            "{k}0 {a} Recipes", "Soups, Stews and {n}", "The Joy of {n}", "{f}'s {a} {n}", "Baking with {f}",
            "Salt and Pepper: {a} Recipes",
        ),
        "pub_a": (
            "Hearth & Table", "Copper Pot", "Spoon & Ladle", "Saffron", "Pantry", "Whisk", "Rolling Pin",
            "Butter & Salt",
        ),
        "pub_b": (
            "Cookbooks", "Kitchen", "Recipes", "Culinary", "Cooking", "Food",
        ),
    },
    "Self-Help": {
        "adj": (
            "Positive", "Mindful", "Effective", "Powerful", "Healthy", "Happy", "Confident", "Successful",
            "Balanced", "Fearless",
        ),
        "noun": (
            "Success", "Habits", "Mind", "Happiness", "Confidence", "Motivation", "Wellness", "Change", "Goals",
            "Power", "Stress", "Healing", "Relationships", "Life", "Self", "Self-Esteem",
        ),
        "tpl": (
            "The {a} {n}", "{k} Steps to {n}", "The Power of {n}", "{a} {n}: A Guide to {m}", "How to Find {n}",
            "{k} Habits of {a} People", "Your {a} Self", "The {n} Workbook", "Stop Worrying and Start {n}",
            "Mind, Body and {n}",
        ),
        "pub_a": (
            "Inner Light", "Open Door", "Bright Path", "Lotus", "Compass", "Sunrise", "Clear Mind",
            "Wellspring",
        ),
        "pub_b": (
            "Self-Help", "Wellness", "Personal Growth", "Inspiration", "Life Skills", "Mindful Living",
        ),
    },
    "Children's": {
        "adj": (
            "Little", "Silly", "Brave", "Tiny", "Happy", "Sleepy", "Magic", "Curious", "Busy", "Giant",
        ),
        "noun": (
            "Bunny", "Puppy", "Kitten", "Teddy", "Bear", "Duckling", "Pony", "Kids", "Friends", "Piglet",
            "Bedtime", "Alphabet", "Nursery", "Playground", "Mouse", "Elephant",
        ),
        "tpl": (
            "The {a} {n}", "{f} and the {a} {n}", "Goodnight, {a} {n}", "The {n}'s Big Day",
            "My First Book of {m}", "{a} {n} Goes to School", "The {a} {n} (Picture Book)",
            "ABC with {f} the {n}", "Where Is {a} {n}?", "{f}, the {n} and Me",
        ),
        "pub_a": (
            "Puddle Jump", "Crayon", "Tiny Feet", "Little Acorn", "Rainbow", "Storytime", "Jellybean", "Teddy",
        ),
        "pub_b": (
            "Kids", "Children's Books", "Picture Books", "Young Readers", "Storybooks", "Nursery",
        ),
    },
    "Thriller": {
        "adj": (
            "Deadly", "Covert", "Lethal", "Fatal", "Rogue", "Silent", "Black", "Hostile", "Dangerous", "Final",
        ),
        "noun": (
            "Conspiracy", "Assassin", "Target", "Agent", "Spy", "Hostage", "Operation", "Pursuit", "Terrorist",
            "Betrayal", "Countdown", "Code", "Killer", "Escape", "Mission", "Sniper",
        ),
        "tpl": (
            "The {a} {n}", "{n} Zero", "The {p} {n}", "{a} {n}: A Thriller", "Operation {a} {m}",
            "The {n} Protocol", "Kill Code: {a} {n}", "{a} Target ({f} {l} Thrillers, No. {k})",
            "Run, Hide, {n}", "The \"{a}\" Conspiracy",
        ),
        "pub_a": (
            "Steel Trigger", "Blackout", "Iron Fist", "Bulletproof", "Crosshair", "Razor", "Covert",
            "Red Alert",
        ),
        "pub_b": (
            "Thrillers", "Suspense", "Action", "Intrigue", "Spy Fiction", "Adrenaline",
        ),
    },
    "Poetry": {
        "adj": (
            "Collected", "Selected", "New", "Lyric", "Quiet", "Evening", "Autumn", "Early", "Late", "Wild",
        ),
        "noun": (
            "Poems", "Verses", "Sonnets", "Poetry", "Songs", "Odes", "Elegies", "Ballads", "Lyrics", "Haiku",
            "Rhymes", "Stanzas", "Psalms", "Hymns", "Couplets", "Canticles",
        ),
        "tpl": (
            "{a} {n}", "{a} {n} of {f} {l}", "{n} from {p}", "The {a} Hour: {n}", "{n} and {m}",
            "Songs of {p}: {n}", "{n}, {y}-2001", "{a} {n}: Poems", "The Book of {n}", "Morning {n}: New Poems",
        ),
        "pub_a": (
            "Verse", "Lyre", "Nightingale", "Inkwell", "Sonnet", "Stanza", "Muse", "Laurel",
        ),
        "pub_b": (
            "Poetry", "Poems", "Verse", "Poets", "Lyric", "Sonnet",
        ),
    },
}

PUBLISHER_SUFFIXES: tuple[str, ...] = ("Press", "Books", "Publishing", "House", "Publishers")

# Big general houses (genre-neutral) take a share of every genre, like Ballantine or Penguin in BX.
NEUTRAL_PUBLISHERS: tuple[str, ...] = (
    "Harbor House", "Meridian Books", "Northgate Press", "Oakridge Publishing", "Bluewater Books",
    "Summit Publishers", "Granite House", "Lakeside Press", "Westbrook Books", "Redfern Publishing",
    "Anchor Point Press", "Fairmont Books", "Broadway Street Publishing", "Kingsbridge Press",
    "Maple Leaf Books", "Atlas House", "Pinecrest Publishers", "Riverside Paperbacks",
)

PLACES: tuple[str, ...] = (
    "Ashford", "Willow Creek", "Blackmoor", "Hollow Bay", "Kingsbury", "Ravenwood", "Elmstead", "Greywater",
    "Port Ellis", "Marlowe", "Thornfield", "Cedar Falls", "Larkspur", "Brighton", "Oakhaven", "Stonebridge",
    "Fenwick", "Harrow", "Millbrook", "Saltmarsh", "Winterhaven", "Briar Hill", "Dunmore", "Eastwick",
)

FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Margaret", "Mark", "Sandra", "Paul", "Ashley", "Steven",
    "Emily", "Andrew", "Donna", "Kenneth", "Michelle", "George", "Carol", "Edward", "Amanda", "Brian",
    "Melissa", "Ronald", "Deborah", "Kevin", "Stephanie", "Jason", "Rebecca", "Peter", "Laura", "Anne", "Helen",
    "Frank", "Diane", "Gregory", "Ruth", "Henry", "Julia", "Walter", "Alice", "Carlos", "Maria", "Hans",
    "Ingrid", "Pierre", "Claire", "Luis", "Elena", "Ian", "Fiona", "Nora", "Oliver",
)

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia", "Rodriguez", "Wilson",
    "Martinez", "Anderson", "Taylor", "Thomas", "Hernandez", "Moore", "Martin", "Jackson", "Thompson", "White",
    "Lopez", "Lee", "Gonzalez", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Perez", "Hall", "Young",
    "Allen", "Sanchez", "Wright", "King", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Ramirez",
    "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Torres", "Parker", "Collins",
    "Edwards", "Stewart", "Morris", "Murphy", "Cook", "Rogers", "Morgan", "Cooper", "Peterson", "Reed",
    "Bailey", "Bell", "Kelly", "Howard", "Ward", "Cox", "Richardson", "Wood", "Watson", "Brooks", "Bennett",
    "Gray", "James", "Hughes", "Price", "Sanders", "Myers", "Long", "Ross", "Foster", "Schmidt", "Weber",
    "Fischer", "Dubois", "Moreau", "Rossi", "Ferrari", "Fernandez", "Navarro", "O'Brien", "McKenzie", "Fraser",
)
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"

# Real city, state, country triples as BX writes them (lower case). Weights give BX's country mix:
# about 70% USA, then Canada, Germany, UK, Australia, Spain and a long tail.
COUNTRY_WEIGHTS: dict[str, float] = {
    "usa": 71.0, "canada": 9.5, "germany": 3.9, "united kingdom": 3.7, "australia": 2.0, "spain": 1.6,
    "italy": 1.1, "france": 0.9, "netherlands": 0.8, "new zealand": 0.5, "switzerland": 0.5, "portugal": 0.45,
    "austria": 0.3, "malaysia": 0.25, "ireland": 0.3, "brazil": 0.3,
}
LOCATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "usa": (
        ("new york", "new york"), ("los angeles", "california"), ("chicago", "illinois"), ("houston", "texas"),
        ("seattle", "washington"), ("san francisco", "california"), ("portland", "oregon"), ("austin", "texas"),
        ("boston", "massachusetts"), ("denver", "colorado"), ("atlanta", "georgia"), ("phoenix", "arizona"),
        ("san diego", "california"), ("philadelphia", "pennsylvania"), ("minneapolis", "minnesota"),
        ("miami", "florida"), ("orlando", "florida"), ("dallas", "texas"), ("columbus", "ohio"),
        ("cincinnati", "ohio"), ("charlotte", "north carolina"), ("raleigh", "north carolina"),
        ("nashville", "tennessee"), ("germantown", "tennessee"), ("madison", "wisconsin"),
        ("milwaukee", "wisconsin"), ("kansas city", "missouri"), ("st. louis", "missouri"),
        ("indianapolis", "indiana"), ("detroit", "michigan"), ("ann arbor", "michigan"),
        ("sacramento", "california"), ("san jose", "california"), ("salt lake city", "utah"),
        ("albuquerque", "new mexico"), ("tucson", "arizona"), ("baltimore", "maryland"),
        ("richmond", "virginia"), ("arlington", "virginia"), ("omaha", "nebraska"), ("des moines", "iowa"),
        ("louisville", "kentucky"), ("pittsburgh", "pennsylvania"), ("buffalo", "new york"),
        ("rochester", "new york"), ("spokane", "washington"), ("boise", "idaho"), ("honolulu", "hawaii"),
        ("anchorage", "alaska"), ("new orleans", "louisiana"), ("oklahoma city", "oklahoma"),
        ("little rock", "arkansas"), ("birmingham", "alabama"), ("jacksonville", "florida"),
        ("tampa", "florida"), ("providence", "rhode island"), ("hartford", "connecticut"),
        ("burlington", "vermont"), ("portland", "maine"), ("washington", "district of columbia"),
        ("las vegas", "nevada"), ("el paso", "texas"),
    ),
    "canada": (
        ("toronto", "ontario"), ("ottawa", "ontario"), ("timmins", "ontario"), ("london", "ontario"),
        ("vancouver", "british columbia"), ("victoria", "british columbia"), ("calgary", "alberta"),
        ("edmonton", "alberta"), ("montreal", "quebec"), ("quebec city", "quebec"), ("winnipeg", "manitoba"),
        ("halifax", "nova scotia"), ("regina", "saskatchewan"), ("saskatoon", "saskatchewan"),
    ),
    "germany": (
        ("berlin", "berlin"), ("hamburg", "hamburg"), ("münchen", "bayern"), ("köln", "nordrhein-westfalen"),
        ("düsseldorf", "nordrhein-westfalen"), ("frankfurt", "hessen"), ("stuttgart", "baden-württemberg"),
        ("freiburg", "baden-württemberg"), ("leipzig", "sachsen"), ("dresden", "sachsen"),
    ),
    "united kingdom": (
        ("london", "england"), ("manchester", "england"), ("birmingham", "england"), ("leeds", "england"),
        ("bristol", "england"), ("oxford", "oxfordshire"), ("cambridge", "cambridgeshire"),
        ("edinburgh", "scotland"), ("glasgow", "scotland"), ("cardiff", "wales"),
        ("belfast", "northern ireland"),
    ),
    "australia": (
        ("sydney", "new south wales"), ("melbourne", "victoria"), ("brisbane", "queensland"),
        ("perth", "western australia"), ("adelaide", "south australia"),
        ("canberra", "australian capital territory"), ("hobart", "tasmania"),
    ),
    "spain": (
        ("madrid", "madrid"), ("barcelona", "barcelona"), ("valencia", "valencia"), ("sevilla", "sevilla"),
        ("bilbao", "vizcaya"), ("málaga", "málaga"), ("zaragoza", "zaragoza"),
    ),
    "italy": (
        ("roma", "lazio"), ("milano", "lombardia"), ("torino", "piemonte"), ("firenze", "toscana"),
    ),
    "france": (
        ("paris", "ile de france"), ("lyon", "rhone-alpes"), ("marseille", "provence"),
        ("toulouse", "midi-pyrenees"),
    ),
    "netherlands": (
        ("amsterdam", "noord-holland"), ("rotterdam", "zuid-holland"), ("utrecht", "utrecht"),
    ),
    "new zealand": (
        ("auckland", "auckland"), ("wellington", "wellington"), ("christchurch", "canterbury"),
    ),
    "switzerland": (
        ("zürich", "zürich"), ("geneva", "geneve"), ("bern", "bern"),
    ),
    "portugal": (
        ("lisboa", "lisboa"), ("porto", "porto"), ("coimbra", "coimbra"),
    ),
    "austria": (
        ("wien", "wien"), ("graz", "steiermark"), ("salzburg", "salzburg"),
    ),
    "malaysia": (
        ("kuala lumpur", "selangor"), ("penang", "penang"),
    ),
    "ireland": (
        ("dublin", "dublin"), ("cork", "cork"), ("galway", "galway"),
    ),
    "brazil": (
        ("são paulo", "são paulo"), ("rio de janeiro", "rio de janeiro"),
    ),
}

# ISBN group (language area) of a publisher; English publishers use 0 or 1.
PUBLISHER_GROUPS: tuple[tuple[str, float], ...] = (
    ("0", 0.72), ("1", 0.12), ("3", 0.06), ("84", 0.04), ("2", 0.03), ("88", 0.03),
)

# Book-Crossing's explicit rating histogram (1..10), from the full 2004 dump: mode 8, mean ~7.6.
EXPLICIT_RATING_COUNTS: tuple[int, ...] = (1770, 2759, 5996, 8904, 50974, 36924, 76457, 103736, 67541, 78610)
# fmt: on
