"""Bundled data files of the card layer (premedication template, obtain-data order catalogue)."""
