"""WiseFuse plugins."""
