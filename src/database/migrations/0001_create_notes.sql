-- Notes: POST /notes, GET /notes/{id}, GET /notes, DELETE /notes/{id}.
-- A bigint identity never hands out an id twice, so a note's ETag (its
-- content's hash) and URL never name another note.
CREATE TABLE notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    text text NOT NULL CHECK (char_length(text) BETWEEN 1 AND 1000),
    created_at timestamptz NOT NULL DEFAULT now()
);
