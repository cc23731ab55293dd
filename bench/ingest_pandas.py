"""Reference for bench/ingest.py: the prototype's pandas read + clean of Kaggle-format Book-Crossing.

Same cleaning rules as engine.ingest (ISBN normalisation, kind and checksum, years, ages, location
split, stray quotes, HTML entities, mojibake on non-ASCII values only, duplicate rule, rejects,
unknown-book/user counts), written the way a pandas prototype would: read_csv with dtype=str,
vectorised .str methods where pandas has them, .map for the Python-only steps. It does less than
bookrec (no line numbers or raw text for malformed lines, which pandas' C reader just skips; no
database write), so the comparison flatters pandas.

Usage: python bench/ingest_pandas.py BOOKS RATINGS USERS
"""

from __future__ import annotations

import datetime as dt
import html
import json
import sys

import pandas as pd

from engine.ingest.clean import repair_mojibake

_ENTITY = r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
_NO_PLACE = r"(?i)^(?:n/?a|null|none|unknown|-+|\.+|,+)?\.?$"


def _read(path: str) -> pd.DataFrame:
    return pd.read_csv(
        path, dtype=str, keep_default_na=False, on_bad_lines="skip", encoding="utf-8"
    )


def _isbn(s: pd.Series) -> pd.Series:
    s = s.str.strip(" \t\r\n\"'\\").str.upper()
    return s.where(s.str.len() > 0)


def _checksum(isbn: pd.Series) -> tuple[pd.Series, pd.Series]:
    is10 = isbn.str.fullmatch(r"\d{9}[\dX]").fillna(False).astype(bool)
    is13 = isbn.str.fullmatch(r"\d{13}").fillna(False).astype(bool)
    digit = lambda i: isbn.str[i].replace("X", "10").pipe(pd.to_numeric, errors="coerce").fillna(0)  # noqa: E731
    s10 = sum(digit(i) * (10 - i) for i in range(10))
    s13 = sum(digit(i) * (1 if i % 2 == 0 else 3) for i in range(13))
    kind = pd.Series("other", index=isbn.index).mask(is10, "isbn10").mask(is13, "isbn13")
    valid = (is10 & (s10 % 11 == 0)) | (is13 & (s13 % 10 == 0))
    return kind, valid


def _fix_text(s: pd.Series) -> pd.Series:
    s = s.str.strip()
    s = s.where(s.str.len() > 0)
    ent = s.str.contains(_ENTITY, regex=True, na=False)
    s = s.mask(ent, s[ent].map(html.unescape))
    non_ascii = s.str.contains(r"[^\x00-\x7F]", regex=True, na=False)
    fixed = {v: repair_mojibake(v) for v in s[non_ascii].unique()}
    return s.mask(non_ascii, s[non_ascii].map(fixed))


def _place(s: pd.Series) -> pd.Series:
    s = s.str.replace(r'["\\`]', "", regex=True).str.strip()
    return s.mask(s.str.fullmatch(_NO_PLACE).fillna(False).astype(bool))


def _int(s: pd.Series) -> pd.Series:
    s = s.str.strip(" \t\"'\\").str.replace(r"\.0+$", "", regex=True)
    return pd.to_numeric(s, errors="coerce")


def clean_books(df: pd.DataFrame, max_year: int) -> tuple[pd.DataFrame, dict]:
    """Books: ISBN, kind, checksum, text repairs, years, one row per ISBN (last wins)."""
    df = df.rename(
        columns={
            "ISBN": "isbn",
            "Book-Title": "title",
            "Book-Author": "author",
            "Year-Of-Publication": "year",
            "Publisher": "publisher",
            "Image-URL-S": "image_url_s",
            "Image-URL-M": "image_url_m",
            "Image-URL-L": "image_url_l",
        }
    )
    df["isbn"] = _isbn(df["isbn"])
    rejected = int(df["isbn"].isna().sum())
    df = df[df["isbn"].notna()].copy()
    for col in ("title", "author", "publisher"):
        df[col] = _fix_text(df[col])
    year = _int(df["year"])
    df["year"] = year.where((year >= 1000) & (year <= max_year)).astype("Int16")
    df["isbn_kind"], df["isbn_valid"] = _checksum(df["isbn"])
    before = len(df)
    df = df.drop_duplicates("isbn", keep="last")
    return df, {"rejected": rejected, "duplicates": before - len(df)}


def clean_users(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Users: integer id, location split, sane ages, one row per user."""
    uid = _int(df["User-ID"])
    rejected = int(uid.isna().sum())
    df = df[uid.notna()].copy()
    df["user_id"] = uid[uid.notna()].astype("int32")
    parts = df["Location"].str.split(",")
    n = parts.str.len()
    df["city"] = _place(parts.str[0])
    df["country"] = _place(parts.str[-1].where(n >= 2))
    df["state"] = _place(
        parts.map(lambda p: ", ".join(x.strip() for x in p[1:-1]) if len(p) >= 3 else None)
    )
    for col in ("city", "state", "country"):
        df[col] = _fix_text(df[col])
    age = _int(df["Age"])
    df["age"] = age.where((age >= 5) & (age <= 110)).astype("Int16")
    before = len(df)
    df = df.drop_duplicates("user_id", keep="last")[["user_id", "city", "state", "country", "age"]]
    return df, {"rejected": rejected, "duplicates": before - len(df)}


def clean_ratings(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Ratings: integer user, ISBN, rating 0..10; explicit beats implicit, then the last line wins."""
    out = pd.DataFrame(
        {
            "user_id": _int(df["User-ID"]),
            "isbn": _isbn(df["ISBN"]),
            "rating": _int(df["Book-Rating"]),
        }
    )
    ok = out["user_id"].notna() & out["isbn"].notna() & out["rating"].between(0, 10)
    rejected = int((~ok).sum())
    out = out[ok].astype({"user_id": "int32", "rating": "int8"})
    out["line"] = range(len(out))
    out["explicit"] = out["rating"] > 0
    before = len(out)
    out = (
        out.sort_values(["explicit", "line"])
        .drop_duplicates(["user_id", "isbn"], keep="last")
        .sort_values("line")
    )
    return out[["user_id", "isbn", "rating"]], {
        "rejected": rejected,
        "duplicates": before - len(out),
    }


def read_clean(books: str, ratings: str, users: str) -> dict:
    """Read and clean the three files; counts as a dict."""
    b, bc = clean_books(_read(books), dt.date.today().year)
    u, uc = clean_users(_read(users))
    r, rc = clean_ratings(_read(ratings))
    rc["unknown_book"] = int((~r["isbn"].isin(b["isbn"])).sum())
    rc["unknown_user"] = int((~r["user_id"].isin(u["user_id"])).sum())
    return {
        "books": {"loaded": len(b), **bc},
        "users": {"loaded": len(u), **uc},
        "ratings": {"loaded": len(r), **rc},
    }


if __name__ == "__main__":
    if len(sys.argv) != 4:  # `just bench` runs every bench/*.py bare: this one is only a reference
        print(
            "pandas reference for bench/ingest.py; usage: python bench/ingest_pandas.py BOOKS RATINGS USERS"
        )
        sys.exit(0)
    print(json.dumps(read_clean(*sys.argv[1:4])))
