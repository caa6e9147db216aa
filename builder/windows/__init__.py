"""Windows releases as data: the profile table (one row per release, built from family
rows), time zones, locales."""
