-- Prefect needs pg_trgm (trigram indexes for searching runs and logs); created once, when the volume is new.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
