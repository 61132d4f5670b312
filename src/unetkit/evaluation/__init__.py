"""Scoring prediction maps with the polyp literature's metrics (see field_metrics, score)."""
