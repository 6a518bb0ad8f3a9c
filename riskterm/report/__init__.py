"""The daily report: one self-contained HTML page per trading day, read from the database."""
