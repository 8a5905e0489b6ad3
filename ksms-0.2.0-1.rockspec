rockspec_format = "3.0"
package = "ksms"
version = "0.2.0-1"
source = {
  -- The release: the v0.2.0 tag of the repository (CHANGELOG.md).
  url = "git+https://example.invalid/ksms.git",
  tag = "v0.2.0",
}
description = {
  summary = "Korean SMS, LMS, MMS and KakaoTalk messages through five providers",
  detailed = [[
ksms sends Korean SMS/LMS/MMS and KakaoTalk AlimTalk/FriendTalk messages
through Senders, KTH ppurio, MessageMe, Cafe24 and SMTNT OneShot, from Lua 5.1
to 5.4, LuaJIT and OpenResty. A small C core (ksms.core) does the byte work:
zlib, AES-128-CBC, Base64, CP949 counting and the OneShot frame codec.
]],
  license = "MIT",
}
dependencies = {
  -- Lua 5.1, 5.2, 5.3 and 5.4 and LuaJIT 2.1 (which luarocks sees as 5.1):
  -- `make test` runs the specs under each of them.
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1.0", -- cjson.safe and cjson.new (per-module settings)
  "luaexpat", -- Cafe24's history is XML (only that call loads it)
  -- LuaSocket is optional: only the OneShot "luasocket" socket adapter
  -- (ksms.oneshot.sockets.luasocket) loads it; OpenResty uses cosockets.
  -- LuaDBI's SQLite driver (Debian: lua-dbi-sqlite3) is optional too: only
  -- the outbox's "sqlite:" store (ksms.outbox.sqlite) loads it.
}
external_dependencies = {
  ZLIB = { header = "zlib.h" },
  OPENSSL = { header = "openssl/evp.h" },
  -- Debian keeps curl/curl.h under the multiarch include directory, which
  -- the compiler searches but a header check would not: look for the library.
  CURL = { library = "curl" },
  -- hiredis's RESP reader (csrc/resp.c; Debian: libhiredis-dev)
  HIREDIS = { header = "hiredis/read.h" },
}
build = {
  type = "builtin",
  -- spec/install_spec.lua checks that every file under lua/ and csrc/ is listed.
  modules = {
    ["ksms.core"] = {
      sources = {
        "csrc/base64.c", "csrc/buffer.c", "csrc/core.c", "csrc/error.c",
        "csrc/frame.c", "csrc/hex.c", "csrc/http.c", "csrc/json.c", "csrc/text.c",
        "csrc/aes.c", "csrc/zlib.c", "csrc/tcp.c", "csrc/resp.c",
      },
      incdirs = { "csrc", "$(ZLIB_INCDIR)", "$(OPENSSL_INCDIR)", "$(CURL_INCDIR)", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(ZLIB_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(CURL_LIBDIR)", "$(HIREDIS_LIBDIR)" },
      libraries = { "z", "crypto", "curl", "hiredis" },
    },
    ["ksms"] = "lua/ksms/init.lua",
    ["ksms.errors"] = "lua/ksms/errors.lua",
    -- the Redis client over the core's RESP codec (docs/redis.md)
    ["ksms.rate"] = "lua/ksms/rate.lua",
    ["ksms.redis"] = "lua/ksms/redis.lua",
    ["ksms.events"] = "lua/ksms/events.lua",
    ["ksms.metrics"] = "lua/ksms/metrics.lua",
    ["ksms.codes"] = "lua/ksms/codes.lua",
    ["ksms.client"] = "lua/ksms/client.lua",
    ["ksms.message"] = "lua/ksms/message.lua",
    ["ksms.rules.phone"] = "lua/ksms/rules/phone.lua",
    ["ksms.rules.ad"] = "lua/ksms/rules/ad.lua",
    ["ksms.rules.schedule"] = "lua/ksms/rules/schedule.lua",
    ["ksms.rules.text"] = "lua/ksms/rules/text.lua",
    ["ksms.providers.common"] = "lua/ksms/providers/common.lua",
    ["ksms.providers.apiv2"] = "lua/ksms/providers/apiv2.lua",
    ["ksms.providers.senders"] = "lua/ksms/providers/senders.lua",
    ["ksms.providers.messageme"] = "lua/ksms/providers/messageme.lua",
    ["ksms.providers.ppurio"] = "lua/ksms/providers/ppurio.lua",
    ["ksms.providers.ppurio_codes"] = "lua/ksms/providers/ppurio_codes.lua",
    ["ksms.providers.cafe24"] = "lua/ksms/providers/cafe24.lua",
    ["ksms.providers.cafe24_codes"] = "lua/ksms/providers/cafe24_codes.lua",
    -- delivery tracking of the outbox (docs/outbox.md)
    ["ksms.outbox.track"] = "lua/ksms/outbox/track.lua",
    ["ksms.outbox.lookup"] = "lua/ksms/outbox/lookup.lua",
    ["ksms.oneshot.codec"] = "lua/ksms/oneshot/codec.lua",
    ["ksms.oneshot.schema"] = "lua/ksms/oneshot/schema.lua",
    ["ksms.oneshot.session"] = "lua/ksms/oneshot/session.lua",
    ["ksms.router"] = "lua/ksms/router.lua",
    ["ksms.router.breaker"] = "lua/ksms/router/breaker.lua",
    ["ksms.oneshot.fleet"] = "lua/ksms/oneshot/fleet/init.lua", -- needs ksms.redis
    ["ksms.oneshot.fleet.lock"] = "lua/ksms/oneshot/fleet/lock.lua",
    ["ksms.oneshot.driver"] = "lua/ksms/oneshot/driver.lua",
    ["ksms.oneshot.window"] = "lua/ksms/oneshot/window.lua",
    ["ksms.oneshot.sockets.core"] = "lua/ksms/oneshot/sockets/core.lua",
    ["ksms.oneshot.sockets.luasocket"] = "lua/ksms/oneshot/sockets/luasocket.lua",
    ["ksms.oneshot.sockets.cosocket"] = "lua/ksms/oneshot/sockets/cosocket.lua",
    ["ksms.oneshot.client"] = "lua/ksms/oneshot/client.lua",
    ["ksms.oneshot.codes"] = "lua/ksms/oneshot/codes.lua",
    ["ksms.oneshot.pacer"] = "lua/ksms/oneshot/pacer.lua",
    ["ksms.oneshot.protocol"] = "lua/ksms/oneshot/protocol.lua",
    ["ksms.oneshot.message"] = "lua/ksms/oneshot/message.lua",
    -- the fleet's report stream (docs/fleet.md); needs ksms.redis
    ["ksms.oneshot.fleet.reports"] = "lua/ksms/oneshot/fleet/reports.lua",
    ["ksms.transport"] = "lua/ksms/transport/init.lua",
    ["ksms.transport.curl"] = "lua/ksms/transport/curl.lua",
    ["ksms.transport.http1"] = "lua/ksms/transport/http1.lua",
    ["ksms.transport.ngx"] = "lua/ksms/transport/ngx.lua",
    ["ksms.ngx.queue"] = "lua/ksms/ngx/queue.lua",
    ["ksms.ngx.oneshot"] = "lua/ksms/ngx/oneshot.lua",
    ["ksms.ngx.oneshot_fleet"] = "lua/ksms/ngx/oneshot_fleet.lua", -- its redis mode; needs ksms.redis
    -- the durable outbox (docs/outbox.md); the SQLite store needs LuaDBI
    -- (Debian: lua-dbi-sqlite3), loaded only when a "sqlite:" store opens
    ["ksms.outbox"] = "lua/ksms/outbox/init.lua",
    ["ksms.outbox.states"] = "lua/ksms/outbox/states.lua",
    ["ksms.outbox.store"] = "lua/ksms/outbox/store.lua",
    ["ksms.outbox.memory"] = "lua/ksms/outbox/memory.lua",
    ["ksms.outbox.sqlite"] = "lua/ksms/outbox/sqlite.lua",
    ["ksms.outbox.redis"] = "lua/ksms/outbox/redis.lua", -- needs ksms.redis
    ["ksms.outbox.worker"] = "lua/ksms/outbox/worker.lua",
    -- the ksms command (bin/ksms)
    ["ksms.cli.args"] = "lua/ksms/cli/args.lua",
    ["ksms.cli.bitset"] = "lua/ksms/cli/bitset.lua",
    ["ksms.cli.bulk_rows"] = "lua/ksms/cli/bulk_rows.lua",
    ["ksms.cli.bulk_send"] = "lua/ksms/cli/bulk_send.lua",
    ["ksms.cli.config"] = "lua/ksms/cli/config.lua",
    ["ksms.cli.csv"] = "lua/ksms/cli/csv.lua",
    ["ksms.cli.dryrun"] = "lua/ksms/cli/dryrun.lua",
    ["ksms.cli.fingerprint"] = "lua/ksms/cli/fingerprint.lua",
    ["ksms.cli.flags"] = "lua/ksms/cli/flags.lua",
    ["ksms.cli.help"] = "lua/ksms/cli/help.lua",
    ["ksms.cli.input"] = "lua/ksms/cli/input.lua",
    ["ksms.cli.main"] = "lua/ksms/cli/main.lua",
    ["ksms.cli.outbox"] = "lua/ksms/cli/outbox.lua",
    ["ksms.cli.output"] = "lua/ksms/cli/output.lua",
    ["ksms.cli.progress"] = "lua/ksms/cli/progress.lua",
    ["ksms.cli.provider"] = "lua/ksms/cli/provider.lua",
    ["ksms.cli.render"] = "lua/ksms/cli/render.lua",
    ["ksms.secrets"] = "lua/ksms/secrets.lua",
    ["ksms.cli.status"] = "lua/ksms/cli/status.lua",
    ["ksms.cli.ad"] = "lua/ksms/cli/ad.lua",
    ["ksms.cli.template"] = "lua/ksms/cli/template.lua",
    ["ksms.cli.when"] = "lua/ksms/cli/when.lua",
    ["ksms.cli.commands.account"] = "lua/ksms/cli/commands/account.lua",
    ["ksms.cli.commands.bulk"] = "lua/ksms/cli/commands/bulk.lua",
    ["ksms.cli.commands.check"] = "lua/ksms/cli/commands/check.lua",
    ["ksms.cli.commands.listen"] = "lua/ksms/cli/commands/listen.lua",
    ["ksms.cli.commands.outbox"] = "lua/ksms/cli/commands/outbox.lua",
    ["ksms.cli.commands.send"] = "lua/ksms/cli/commands/send.lua",
  },
  install = {
    -- luarocks wraps it so the installed modules are found.
    bin = { ksms = "bin/ksms" },
  },
}
-- luarocks test: the whole busted suite under Lua 5.4 (make specs builds the
-- core into build/lua5.4 first); it installs nothing (make test, which
-- installs missing Debian packages as root, is the full run).
test = {
  type = "command",
  command = "make specs",
}
