-- Headless Neovim driver for test_neovim.py: attach the Diffill server with Neovim's own LSP client (configured
-- as docs/neovim.md shows), ask for inline and classic completions, write what came back as JSON, quit.
-- Inputs come from the environment: DIFFILL_CMD (JSON list), DIFFILL_LINE/COL (0-based, UTF-8 bytes), DIFFILL_OUT.

local out = { errors = {} }
local function finish()
  local handle = assert(io.open(os.getenv("DIFFILL_OUT"), "w"))
  handle:write(vim.json.encode(out))
  handle:close()
  vim.cmd("qall!")
end

-- The user's configuration, as docs/neovim.md has it (the file to edit is on the command line).
vim.lsp.config("diffill", {
  cmd = vim.json.decode(os.getenv("DIFFILL_CMD")),
  filetypes = { "python" },
  root_markers = { ".git" },
  init_options = { completion = { debounceMs = 0 } },
})
vim.lsp.enable("diffill")

local function run()
  local client
  vim.wait(30000, function()
    client = vim.lsp.get_clients({ name = "diffill", bufnr = 0 })[1]
    return client ~= nil and client.initialized
  end, 20)
  assert(client, "the diffill client did not start")
  out.encoding = client.offset_encoding
  out.inline_provider = client.server_capabilities.inlineCompletionProvider ~= nil

  local status = client:request_sync("diffill/stats", { waitForModel = 60 }, 70000, 0)
  out.state = status and status.result and status.result.state

  local line, col = tonumber(os.getenv("DIFFILL_LINE")), tonumber(os.getenv("DIFFILL_COL"))
  -- The position in the negotiated encoding (Neovim prefers UTF-8: byte columns).
  local params = { textDocument = vim.lsp.util.make_text_document_params(0), position = { line = line, character = col } }
  out.position = params.position

  params.context = { triggerKind = 1 } -- Invoked
  local inline, inline_err = vim.lsp.buf_request_sync(0, "textDocument/inlineCompletion", params, 30000)
  if inline_err then
    table.insert(out.errors, "inline: " .. inline_err)
  end
  out.inline = inline and inline[client.id]

  params.context = { triggerKind = 1 }
  local classic, classic_err = vim.lsp.buf_request_sync(0, "textDocument/completion", params, 30000)
  if classic_err then
    table.insert(out.errors, "completion: " .. classic_err)
  end
  out.completion = classic and classic[client.id]

  local after = client:request_sync("diffill/stats", {}, 10000, 0)
  out.stats = after and after.result
end

-- After startup: the file is loaded, its FileType event has started the client through vim.lsp.enable.
vim.api.nvim_create_autocmd("VimEnter", {
  once = true,
  callback = function()
    local ok, err = pcall(run)
    if not ok then
      table.insert(out.errors, tostring(err))
    end
    finish()
  end,
})
