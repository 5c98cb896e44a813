"""Paper protocols and their machinery: the IFEval experiment, the refusal and ILRR studies, the demo that runs
all three, the run log that makes them resumable, the organism tasks, reports, and the organisms' corpora and
training. Measurements they use live one floor up, in `analyses`; the `mdm-lens` entry lives in `analyses.cli`."""
