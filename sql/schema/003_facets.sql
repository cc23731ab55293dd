-- Normalised facets (issue: facets).
CREATE TABLE facet_labels (
    field      VARCHAR NOT NULL,       -- genre | category | theme | tone | audience
    raw_label  VARCHAR NOT NULL,
    cluster_id INTEGER NOT NULL,
    label      VARCHAR NOT NULL,       -- human name of the cluster
    PRIMARY KEY (field, raw_label)
);

CREATE TABLE book_facets (
    isbn  VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    PRIMARY KEY (isbn, field, label)
);
