"""Contacts' personal data as the product takes it in and shows it (no Dagster imports)."""
