"""Stage 4: results -> JSON, HTML, plots. Formats only; computes nothing."""
