"""Authenticity: provenance metadata written into every image ganforge produces."""
