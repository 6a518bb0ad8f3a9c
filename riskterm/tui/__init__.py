"""The Textual dashboard. Only this package imports Textual; the engine never does."""
