-- Headless Neovim driver for test_neovim.py: attach the Diffill server with Neovim's own LSP client, configured
-- by neovim/diffill.lua as docs/neovim.md shows; ask for inline and classic completions; then type in insert mode
-- and wait for the popup the server's trigger characters open; write what happened as JSON, quit.
-- Inputs come from the environment: DIFFILL_PLUGIN (neovim/diffill.lua), DIFFILL_CMD (JSON list), DIFFILL_LINE/COL
-- (0-based, UTF-8 bytes), DIFFILL_TYPE_FILE (a text file to type in), DIFFILL_TYPED (what to type), DIFFILL_OUT.

local out = { errors = {}, notifications = {} }

-- Every message the user would see (the server's window/showMessage lands here too).
vim.notify = function(message, level)
  table.insert(out.notifications, { message = message, level = level or vim.log.levels.INFO })
end

local function finish()
  local handle = assert(io.open(os.getenv("DIFFILL_OUT"), "w"))
  handle:write(vim.json.encode(out))
  handle:close()
  vim.cmd("qall!")
end

-- The user's configuration, as docs/neovim.md has it: the plugin file with the server command of this checkout
-- and plain text enabled (even a random-weight model completes plain text: its validation is line-based only).
dofile(os.getenv("DIFFILL_PLUGIN")).setup({
  cmd = vim.json.decode(os.getenv("DIFFILL_CMD")),
  filetypes = { "python", "text" },
  -- `model = {}` is sent as [] (as `{ path = nil }` is): the server must take it for an empty object, silently.
  init_options = { completion = { debounceMs = 0 }, model = {}, remote = {} },
})

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
  return client
end

-- Typing: open a new line in a text buffer and type into it; the keys run from the main loop once the VimEnter
-- callback returns, and a timer watches for the popup (the first item is then accepted with <C-n><C-y>).
local function type_and_watch(client)
  vim.cmd.edit(os.getenv("DIFFILL_TYPE_FILE"))
  local attached = vim.wait(10000, function()
    return vim.lsp.buf_is_attached(0, client.id)
  end, 20)
  assert(attached, "the diffill client did not attach to the text buffer")
  vim.api.nvim_feedkeys("Go" .. os.getenv("DIFFILL_TYPED"), "n", false)
  local timer = assert(vim.uv.new_timer())
  local deadline, accepted = vim.uv.now() + 60000, false
  timer:start(50, 50, vim.schedule_wrap(function()
    if accepted then
      timer:stop()
      out.line = vim.api.nvim_get_current_line()
      local after = client:request_sync("diffill/stats", {}, 10000, 0)
      out.typing_stats = after and after.result
      finish()
    elseif vim.fn.pumvisible() == 1 then
      out.mode = vim.api.nvim_get_mode().mode
      out.popup = vim.fn.complete_info({ "items" }).items
      accepted = true
      vim.api.nvim_feedkeys(vim.keycode("<C-n><C-y>"), "n", false)
    elseif vim.uv.now() > deadline then
      timer:stop()
      table.insert(out.errors, "no completion popup while typing")
      finish()
    end
  end))
end

-- After startup: the file is loaded, its FileType event has started the client through vim.lsp.enable.
vim.api.nvim_create_autocmd("VimEnter", {
  once = true,
  nested = true, -- so that `:edit` in it runs FileType, which attaches the client
  callback = function()
    local ok, result = pcall(run)
    if ok then
      ok, result = pcall(type_and_watch, result)
    end
    if not ok then
      table.insert(out.errors, tostring(result))
      finish()
    end
  end,
})
