"""Fill-in-the-middle around the model: requests from an editor cursor, syntax-aware spans and validation.

`fim.request` turns a document and an LSP cursor into a `FimRequest` (prefix/suffix within token budgets,
mode, canvas length); `fim.validate` checks the model's candidates with tree-sitter, truncates them at a
syntactic boundary, drops text that repeats the suffix and ranks them; `fim.spans` gives the training data
sampler the statements and block bodies an editor would ask for. Pure Python plus tree-sitter: no torch, no
LSP types.
"""
