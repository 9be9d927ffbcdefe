"""The names of the recipes that searches (``flatarch search --recipe``) and trainings
(``flatarch train --recipe``) share; what each sets lives with the method or the training."""

#: the recipe every method and training has: the paper's common settings (tables 3, 4 and 5)
PAPER_RECIPE = "paper"
#: what the A2M authors' own code (AI-Tech-Research-Lab/AsquaredM) ran for the paper's table 2
AUTHORS_RECIPE = "a2m-authors"
