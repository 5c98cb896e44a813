"""Paper protocols, reports, the demo, and the organism corpora and training (being moved here)."""
