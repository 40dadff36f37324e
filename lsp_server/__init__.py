"""Diffill's language server: fill-in-the-middle completions over LSP (pygls), for any editor.

`textDocument/inlineCompletion` (LSP 3.18, ghost text) and `textDocument/completion` (for clients without
inline completion) are answered by `fim` + `engine`: the document and cursor become a FIM request, a local or
remote engine samples candidates, fim validates and ranks them. Start it with `diffill lsp` or
`python -m lsp_server` (stdio by default); see `lsp_server.cli`.
"""

__version__ = "0.1.0"
