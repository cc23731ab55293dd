-- Confidence of each stored label (issue 12): the zero-shot labeller's probability per label
-- (softmax over the field's vocabulary, calibrated on the catalogue). LLM labels have no row:
-- no confidence means "as the provider said". Rows of a book are replaced with its enrichment.
CREATE TABLE book_label_confidence (
    isbn       VARCHAR NOT NULL,
    field      VARCHAR NOT NULL,
    label      VARCHAR NOT NULL,
    confidence FLOAT NOT NULL
);
