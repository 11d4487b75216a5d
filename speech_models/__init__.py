"""Where the Vosk models and the rating grammar live (issue: speech ratings)."""
