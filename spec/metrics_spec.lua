-- metrics_spec.lua - ksms.metrics: observe, hook and the exact Prometheus
-- text render gives; label values bounded to known sets.
local metrics = require "ksms.metrics"

local function ev(t)
  local e = { provider = "senders", operation = "send", kind = "sms", recipients = 1, status = "ok",
    duration = 0.02, attempt = 1 }
  for k, v in pairs(t or {}) do e[k] = v end
  return e
end

describe("ksms.metrics", function()
  it("renders counters and the histogram exactly", function()
    local m = metrics.new { buckets = { 0.1, 1 } }
    m:observe(ev { recipients = 2 })
    m:observe(ev { duration = 0.5 })
    m:observe(ev { status = "failed", category = "balance", code = "185", duration = 0.25 })
    m:observe(ev { status = "maybe_sent", category = "timeout", code = "timeout", duration = 5 })
    m:observe(ev { operation = "balance", recipients = 0, duration = 0.05 })
    m:observe(ev { provider = "oneshot", operation = "report", duration = 0 })
    assert.equal(table.concat({
      '# HELP ksms_errors_total Provider operations that did not succeed, by error category and code.',
      '# TYPE ksms_errors_total counter',
      'ksms_errors_total{provider="senders",operation="send",category="balance",code="other"} 1',
      'ksms_errors_total{provider="senders",operation="send",category="timeout",code="timeout"} 1',
      '# HELP ksms_messages_total Recipients of the messages ksms sent, by outcome.',
      '# TYPE ksms_messages_total counter',
      'ksms_messages_total{provider="senders",operation="send",status="failed"} 1',
      'ksms_messages_total{provider="senders",operation="send",status="maybe_sent"} 1',
      'ksms_messages_total{provider="senders",operation="send",status="ok"} 3',
      '# HELP ksms_operations_total Provider operations ksms ran, by outcome.',
      '# TYPE ksms_operations_total counter',
      'ksms_operations_total{provider="oneshot",operation="report",status="ok"} 1',
      'ksms_operations_total{provider="senders",operation="balance",status="ok"} 1',
      'ksms_operations_total{provider="senders",operation="send",status="failed"} 1',
      'ksms_operations_total{provider="senders",operation="send",status="maybe_sent"} 1',
      'ksms_operations_total{provider="senders",operation="send",status="ok"} 2',
      '# HELP ksms_request_duration_seconds Seconds a provider operation took.',
      '# TYPE ksms_request_duration_seconds histogram',
      'ksms_request_duration_seconds_bucket{provider="senders",operation="balance",le="0.1"} 1',
      'ksms_request_duration_seconds_bucket{provider="senders",operation="balance",le="1"} 1',
      'ksms_request_duration_seconds_bucket{provider="senders",operation="balance",le="+Inf"} 1',
      'ksms_request_duration_seconds_sum{provider="senders",operation="balance"} 0.05',
      'ksms_request_duration_seconds_count{provider="senders",operation="balance"} 1',
      'ksms_request_duration_seconds_bucket{provider="senders",operation="send",le="0.1"} 1',
      'ksms_request_duration_seconds_bucket{provider="senders",operation="send",le="1"} 3',
      'ksms_request_duration_seconds_bucket{provider="senders",operation="send",le="+Inf"} 4',
      'ksms_request_duration_seconds_sum{provider="senders",operation="send"} 5.77',
      'ksms_request_duration_seconds_count{provider="senders",operation="send"} 4',
    }, "\n") .. "\n", m:render())
  end)

  it("renders nothing before any event, and forgets on reset", function()
    local m = metrics.new()
    assert.equal("", m:render())
    m:observe(ev())
    assert.matches("ksms_operations_total", m:render())
    m:reset()
    assert.equal("", m:render())
  end)

  it("keeps label values to known sets", function()
    local m = metrics.new { codes = { ["185"] = true } }
    local hook = m:hook()
    hook(ev { provider = 'evil"\n', operation = "x{y}", status = "weird", category = "nope", code = "01012345678" })
    hook(ev { status = "failed", category = "balance", code = "185" })
    hook("not a table")
    local text = m:render()
    assert.matches('ksms_operations_total{provider="other",operation="other",status="other"} 1', text, 1, true)
    assert.matches('category="other",code="other"', text, 1, true)
    assert.matches('category="balance",code="185"', text, 1, true)
    assert.is_nil(text:find("0101234", 1, true))
    local all = metrics.new { codes = "all" }
    all:observe(ev { status = "failed", category = "recipient", code = 7 })
    assert.matches('code="7"', all:render(), 1, true)
  end)

  it("refuses bad options", function()
    assert.has_error(function() metrics.new { bucket = { 1 } } end)
    assert.has_error(function() metrics.new { buckets = { 1, 0.5 } } end)
    assert.has_error(function() metrics.new { dict = "nope" } end)
  end)
end)
