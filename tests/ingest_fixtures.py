"""Tiny Book-Crossing files in each real format, written byte for byte by the ingest tests."""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------- 2004 BX-CSV-Dump (cp1252, ';', CRLF)

BX_BOOKS = [
    '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"Image-URL-S";"Image-URL-M";"Image-URL-L"',
    '"0195153448";"Classical Mythology";"Mark P. O. Morford";"2002";"Oxford University Press";"http://s/1.jpg";"http://m/1.jpg";"http://l/1.jpg"',
    '"0002005018";"Clara Callan";"Richard Bruce Wright";"2001";"HarperFlamingo Canada";"";"";""',
    '"0060973129";"Decision in Normandy";"Carlo D\u2019Este";"1991";"HarperPerennial";"";"";""',
    '"0374157065";"Flu; the Story of the Great Influenza";"Gina Bari Kolata";"1999";"Farrar Straus &amp; Giroux";"";"";""',
    '"078946697X";"DK Readers: Creating the X-Men\\";"Michael Teitelbaum";"2000";"DK Publishing Inc";"";"";""',
    '"0425176428";"What If?: The World\'s \\"Foremost\\" Historians";"Robert Cowley";"2000";"Berkley";"";"";""',
    '"3257224281";"Die M\u00e4nner";"J\u00fcrgen M\u00fcller";"0";"Diogenes";"";"";""',
    '"039592720x";"Interpreter of Maladies";"Jhumpa Lahiri";"2030";"Houghton Mifflin";"";"";""',
    '"";"No ISBN At All";"Anon";"1999";"Nobody";"";"";""',
    '"1234567890";"Bad Checksum";"Some One";"999";"Nobody";"";"";""',
    "",
    '"9780306406157";"Thirteen Digits";"Some One";"1000";"Nobody";"";"";""',
    '"this line is broken";"only two"',
    '"2070408507";"Le Petit Prince";"Antoine de Saint-Exup\u00c3\u00a9ry";"1999";"Gallimard";"";"";""',
]
# line numbers (1-based, header = 1) of the notable rows above
BX_BOOKS_EMPTY_ISBN_LINE = 10
BX_BOOKS_BROKEN_LINE = 14

BX_USERS = [
    '"User-ID";"Location";"Age"',
    '"1";"nyc, new york, usa";NULL',
    '"2";"stockton, california, usa";"18"',
    '"3";"moscow, yukon territory, russia";NULL',
    '"4";"porto, v.n.gaia, portugal";"17"',
    '"5";"farnborough, hants, united kingdom";"0"',
    '"6";"santa monica, california, usa";"244"',
    '"7";"k\u00f6ln, n/a, germany";"5"',
    '"x8";"bad, id, usa";"20"',
    '"9";"berlin";"110"',
    '"10";"rio de janeiro, rio de janeiro, brazil";"111"',
]
BX_USERS_BAD_ID_LINE = 9

BX_RATINGS = [
    '"User-ID";"ISBN";"Book-Rating"',
    '"1";"0195153448";"0"',
    '"2";"0195153448";"8"',
    '"2";"0002005018";"0"',
    '"2";"0002005018";"6"',
    '"3";"0002005018";"7"',
    '"3";"0002005018";"9"',
    '"3";"0002005018";"0"',
    '"4";"039592720x";"5"',
    '"5";"9999999999";"3"',
    '"99";"0195153448";"4"',
    '"abc";"0195153448";"4"',
    '"6";"0195153448";"11"',
    '"6";"0195153448";"x"',
    '"6";"";"5"',
    '"6";"0195153448"',
    '"7";" 0374157065 ";"10"',
]
# line -> reason for every rejected ratings line
BX_RATINGS_REJECTED = {
    12: "user id not an integer",
    13: "rating out of range 0..10",
    14: "rating not an integer",
    15: "empty isbn",
    16: "wrong field count",
}


def write_bx(directory: Path) -> dict[str, Path]:
    """The 2004 dump: Windows-1252 bytes, CRLF line ends, every value quoted, NULL ages."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for src, name, lines in (
        ("books", "BX-Books.csv", BX_BOOKS),
        ("users", "BX-Users.csv", BX_USERS),
        ("ratings", "BX-Book-Ratings.csv", BX_RATINGS),
    ):
        path = directory / name
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
        paths[src] = path
    return paths


# ---------------------------------------------------------------- Kaggle edition (UTF-8, ',', LF)

KAGGLE_BOOKS = [
    "ISBN,Book-Title,Book-Author,Year-Of-Publication,Publisher,Image-URL-S,Image-URL-M,Image-URL-L",
    "0195153448,Classical Mythology,Mark P. O. Morford,2002,Oxford University Press,http://s/1.jpg,http://m/1.jpg,http://l/1.jpg",
    '0002005018,"Clara Callan, A Novel",Richard Bruce Wright,2001,HarperFlamingo Canada,,,',
    '0060973129,"He Said ""Hi""",Carlo D\'Este,1991,HarperPerennial,,,',
    '078946697X,"DK Readers: Creating the X-Men, How It All Began (Level 4: Proficient Readers)\\"";Michael Teitelbaum""",2000,DK Publishing Inc,http://s/2.jpg,http://m/2.jpg,http://l/2.jpg,',
    "3257224281,Die M\u00c3\u00a4nner,J\u00fcrgen M\u00fcller,1999,Diogenes,,,",
    '0440234743,"Unclosed quote,John Grisham,1999,Dell,,,',
    "0971880107,Wild Animus,Rich Shapero,2004,Too Far,,,",
    '0345417623,"A Title With a',
    'Newline Inside",Somebody,2000,Ballantine,,,',
    "0684823802,Out of the Silent Planet,C.S. Lewis,1996,Scribner,,,",
]
KAGGLE_BOOKS_BROKEN_LINE = 7

KAGGLE_USERS = [
    "User-ID,Location,Age",
    '1,"nyc, new york, usa",',
    '2,"stockton, california, usa",18.0',
    '3,"moscow, yukon territory, russia",',
    '4,"porto, v.n.gaia, portugal",17',
    '5,"farnborough, hants, united kingdom",NaN',
]

KAGGLE_RATINGS = [
    "User-ID,ISBN,Book-Rating",
    "1,0195153448,0",
    "2,0195153448,5",
    "2,0002005018,3",
    "3,078946697X,10",
    "4,0971880107,0",
    "5,0345417623,7",
    "6,0684823802,8",
    "2,0195153448,9",
]


def write_kaggle(directory: Path) -> dict[str, Path]:
    """The Kaggle edition: UTF-8, comma-separated, RFC-4180 quoting, 'city, state, country' locations."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for src, name, lines in (
        ("books", "Books.csv", KAGGLE_BOOKS),
        ("users", "Users.csv", KAGGLE_USERS),
        ("ratings", "Ratings.csv", KAGGLE_RATINGS),
    ):
        path = directory / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[src] = path
    return paths


# ---------------------------------------------------------------- split-column variant (like ../shared/data)

SPLIT_BOOKS = [
    "ISBN,Book-Title,Book-Author,Year-Of-Publication,Book-Publisher",
    "0002005018,Clara Callan,Richard Bruce Wright,2001,HarperFlamingo Canada",
    '0060914068,"Love, Medicine and Miracles",M.D. Bernie S. Siegel,1988,HarperCollins Publishers',
    '0316769487,The Catcher in the Rye,J.D. Salinger,1991,"Little, Brown"',
    "3492045642,Quersch\u00c3\u0083?\u00c3\u0082\u00c2\u00bcsse - Downsize This!,Michael Moore,2003,Piper",
    "0156528207,The Little Prince,Antoine de Saint-Exup\u00c3\u0083\u00c2\u00a9ry,1968,Harcourt",
    "039592720X,Interpreter of Maladies,Jhumpa Lahiri,1999,Houghton Mifflin Co",
    "039592720x,Interpreter of Maladies,Jhumpa Lahiri,1999,Houghton Mifflin Co.",
    "0446310786,To Kill a Mockingbird,Harper Lee,0,Little Brown & Company",
]

SPLIT_USERS = [
    "User-ID,User-City,User-State,User-Country,User-Age",
    '8,timmins, ontario," canada""",',
    '9,germantown, tennessee," usa""",',
    '19,weston, ,,"14"""',
    '12036,zurich," \\""n/a\\"""," switzerland""",',
    '36656,manila," \\""n/a`"," philippines""",28',
    '276113,&#321;\u00f3d&#378;, &#322;\u00f3dzkie," poland""",21',
    '334,jyv\u00e4skyl\u00e4, n/a," finland""",244',
]

SPLIT_RATINGS = [
    "User-ID,ISBN,Book-Rating",
    "8,0002005018,5",
    "9,0060914068,9",
    "19,039592720x,8",
    "12036,0156528207,10",
    "334,0446310786,7",
]


def write_split(directory: Path) -> dict[str, Path]:
    """The split-column variant: Book-Publisher, User-City/State/Country/Age, stray quotes."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for src, name, lines in (
        ("books", "Books.csv", SPLIT_BOOKS),
        ("users", "Users.csv", SPLIT_USERS),
        ("ratings", "Ratings.csv", SPLIT_RATINGS),
    ):
        path = directory / name
        path.write_text("\n".join(lines), encoding="utf-8")  # no final newline, like the real files
        paths[src] = path
    return paths
