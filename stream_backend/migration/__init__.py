"""A primary system's history into Stream, with proof: the import format (import_file.py), the
backfill over the live API or Stream's importer (backfill.py), pacing and retries
(pacing.py), and verify (verify.py). No Flask here: web/commands.py runs them as
`flask --app app backfill` and `verify`."""
