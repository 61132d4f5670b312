"""Scoring: confusion-count metrics, the field's metrics, frame scores, evaluate, report."""
