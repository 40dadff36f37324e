-- Diffill for Neovim: fill-in-the-middle completions from `diffill lsp` through Neovim's own LSP client.
-- Copy to ~/.config/nvim/lua/diffill.lua and call `require("diffill").setup()` from init.lua (docs/neovim.md).
-- Needs Neovim >= 0.11 (vim.lsp.config / vim.lsp.enable); ghost text needs 0.12 (vim.lsp.inline_completion).
-- Neovim 0.11 gets the completion popup instead, opened as you type (the server's trigger characters).

local M = {}

M.defaults = {
  -- `diffill lsp` and `python -m lsp_server` are the same server; stdio is the default transport.
  cmd = { "diffill", "lsp" },
  filetypes = { "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp" },
  root_markers = { ".git" },
  -- Read once at startup; the same keys can be changed later through `settings` (docs/neovim.md).
  -- model.path: a checkpoint directory instead of the embedded default model, e.g. model = { path = "~/ckpt" };
  -- remote.url / remote.token: a `diffill serve` box instead of the local model.
  init_options = {
    completion = {
      steps = 8, threshold = 0.9, temperature = 0.8, maxLines = 12, repairs = 2, firstSteps = 4, debounceMs = 75,
    },
    languages = { enabled = { markdown = false } },
  },
}

-- Popup items: Neovim inserts an item's `word`, which for a textEdit is only the text up to the first space;
-- take the whole first line of the suggestion instead (multi-line suggestions need ghost text, Neovim 0.12).
local function popup_item(item)
  local text = item.textEdit and item.textEdit.newText or item.insertText or item.label
  return { word = text:match("^[^\n]*") }
end

local function attach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if not client or client.name ~= "diffill" then
    return
  end
  -- As `:help lsp-autocompletion` advises: show a single item too, and never insert one the user did not pick.
  vim.bo[args.buf].completeopt = "menuone,noselect,popup"
  vim.lsp.completion.enable(true, client.id, args.buf, { autotrigger = true, convert = popup_item })
end

--- Configure and enable the server. `opts` overrides `M.defaults`: `cmd`, `filetypes` and `root_markers` replace
--- the defaults, `init_options` is merged into them key by key.
function M.setup(opts)
  opts = opts or {}
  local config = vim.tbl_extend("force", M.defaults, opts)
  config.init_options = vim.tbl_deep_extend("force", M.defaults.init_options, opts.init_options or {})
  vim.lsp.config("diffill", config)
  vim.lsp.enable("diffill")

  if vim.lsp.inline_completion then
    -- Neovim 0.12: inline (ghost text) completion, accepted with <Tab>.
    vim.lsp.inline_completion.enable()
    vim.keymap.set("i", "<Tab>", function()
      if not vim.lsp.inline_completion.get() then
        return "<Tab>"
      end
    end, { expr = true, desc = "Accept the Diffill suggestion" })
  else
    -- Neovim 0.11: the completion popup (textDocument/completion), opened while typing.
    vim.api.nvim_create_autocmd("LspAttach", {
      group = vim.api.nvim_create_augroup("diffill", { clear = true }),
      callback = attach,
    })
  end
end

return M
