"""Tools around the input contract (gendetect.schema) for a user's own table:
`infer` drafts a schema from a file for the user to edit, `render` writes it
as commented YAML, `check` says column by column what a file would be
refused for, with the schema's own validation (gendetect.schema.validate_column).
"""
