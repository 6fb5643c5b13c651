"""The POET barite/celestite benchmark: a mass-conserving NumPy generator, the dataset with its
stoichiometry matrix and scaling bounds, and an optional PHREEQC reference set."""
