-- Diffill for Neovim: fill-in-the-middle completions from `diffill lsp` through Neovim's own LSP client.
-- Copy to ~/.config/nvim/lua/diffill.lua and `require("diffill")` from init.lua (see docs/neovim.md).
-- Needs Neovim >= 0.11 (vim.lsp.config / vim.lsp.enable); ghost text needs 0.12 (vim.lsp.inline_completion).

vim.lsp.config("diffill", {
  -- `diffill lsp` and `python -m lsp_server` are the same server; stdio is the default transport.
  cmd = { "diffill", "lsp" },
  filetypes = { "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp" },
  root_markers = { ".git" },
  -- Read once at startup; the same keys can be changed later through `settings` + :lua vim.lsp.buf_notify(...).
  init_options = {
    model = { path = nil }, -- nil: the embedded default model; or a checkpoint directory
    remote = { url = nil, token = nil }, -- a `diffill serve` box instead of the local model
    completion = { steps = 8, threshold = 0.9, temperature = 0.8, maxLines = 12, debounceMs = 75 },
    languages = { enabled = { markdown = false } },
  },
})
vim.lsp.enable("diffill")

-- Neovim 0.12: inline (ghost text) completion, accepted with <Tab>.
if vim.lsp.inline_completion then
  vim.lsp.inline_completion.enable()
  vim.keymap.set("i", "<Tab>", function()
    if not vim.lsp.inline_completion.get() then
      return "<Tab>"
    end
  end, { expr = true, desc = "Accept the Diffill suggestion" })
else
  -- Neovim 0.11: the completion popup (textDocument/completion) instead.
  vim.api.nvim_create_autocmd("LspAttach", {
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == "diffill" then
        vim.lsp.completion.enable(true, client.id, args.buf, { autotrigger = true })
      end
    end,
  })
end
