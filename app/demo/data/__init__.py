"""Demo data files (package so that the JSON files ship in the wheel)."""
