"""Data curation: find the masks a model disagrees with, and move corrections in and out of an
annotation tool.

- `audit.audit`: per image, how far a mask and a model's prediction disagree (Dice, boundary
  distance, polyps in one and not the other, area ratio, the model's confidence), ranked by a
  suspicion score into `audit.csv` and an HTML page of the most suspicious images, plus the
  near-duplicate frames across splits (`duplicates.csv`).
- `labels`: masks or predictions out as COCO JSON (RLE) or CVAT for images 1.1 XML, and the
  curated export back in as a new mask folder unetkit trains on (`import_labels`).

Needs the `curation` extra: `pip install unetkit[curation]`. See docs/curation.md.
"""
