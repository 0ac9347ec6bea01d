-- Neovim (0.7 and later) driving `dcode lsp` headless: attach the server to the buffer, run the
-- "dcode: fill hole" code action at the marker (its command; the server's workspace/applyEdit
-- edits the buffer), then ask for completion at the end of the last line and apply the item.
-- What happened is written as JSON to $DCODE_NVIM_OUT; the test asserts on it.
local out_path = os.getenv("DCODE_NVIM_OUT")
local result = {}

local function buffer_text()
  return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n") .. "\n"
end

local function request(method, params)
  local responses, err = vim.lsp.buf_request_sync(0, method, params, 120000)
  assert(responses, method .. ": " .. tostring(err))
  for _, response in pairs(responses) do
    assert(not response.error, method .. ": " .. vim.inspect(response.error))
    return response.result
  end
  error(method .. ": no answer")
end

local function run()
  local client_id = vim.lsp.start_client({
    name = "dcode",
    cmd = vim.fn.json_decode(os.getenv("DCODE_LSP_CMD")),
    root_dir = vim.fn.getcwd(),
    init_options = vim.fn.json_decode(os.getenv("DCODE_LSP_SETTINGS")),
  })
  vim.lsp.buf_attach_client(0, client_id)
  assert(vim.wait(60000, function()
    local client = vim.lsp.get_client_by_id(client_id)
    return client ~= nil and client.initialized
  end, 20), "the server did not start")

  -- "dcode: fill hole" on the marker line.
  local marker = vim.fn.search("dcode: fill")
  vim.api.nvim_win_set_cursor(0, { marker, 4 })
  local params = vim.lsp.util.make_range_params()
  params.context = { diagnostics = {} }
  local fill
  for _, action in ipairs(request("textDocument/codeAction", params)) do
    if action.title == "dcode: fill hole" then fill = action end
  end
  assert(fill, "no dcode: fill hole action")
  request("workspace/executeCommand", fill.command)
  result.after_fill = buffer_text()

  -- Completion at the end of the last line, applied as the completion menu would.
  -- (As in insert mode after the last character: normal mode's cursor cannot stand there.)
  local last = vim.api.nvim_buf_line_count(0)
  local position = { line = last - 1, character = #vim.api.nvim_buf_get_lines(0, last - 1, last, false)[1] }
  result.cursor = position
  local items = request("textDocument/completion", {
    textDocument = vim.lsp.util.make_text_document_params(), position = position }).items
  assert(#items == 1, "expected one completion item, got " .. #items)
  result.completion = items[1].textEdit
  vim.lsp.util.apply_text_edits({ items[1].textEdit }, 0, "utf-16")
  result.after_completion = buffer_text()
end

local ok, err = pcall(run)
result.error = (not ok) and tostring(err) or vim.NIL
local out = io.open(out_path, "w")
out:write(vim.fn.json_encode(result))
out:close()
vim.cmd("qall!")
