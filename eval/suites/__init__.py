"""Benchmark suites beside HumanEval-Infilling (``eval.humaneval``): SAFIM, SantaCoder-FIM, tasks cut from a
repository. Each turns the published rows into ``eval.editor.FimTask``s and scores completions the way its authors
do; ``eval.runner`` runs any of them on any backend."""
