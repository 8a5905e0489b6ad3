rockspec_format = "3.0"
package = "ksms"
version = "scm-1"
source = {
  url = "git+https://example.invalid/ksms.git",
  branch = "main",
}
description = {
  summary = "Korean SMS, LMS, MMS and KakaoTalk messages through five providers",
  detailed = [[
ksms sends Korean SMS/LMS/MMS and KakaoTalk AlimTalk/FriendTalk messages
through Senders, KTH ppurio, MessageMe, Cafe24 and SMTNT OneShot, from Lua 5.4
and from OpenResty (LuaJIT). A small C core (ksms.core) does the byte work:
zlib, AES-128-CBC, Base64, CP949 counting and the OneShot frame codec.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  ZLIB = { header = "zlib.h" },
  OPENSSL = { header = "openssl/evp.h" },
}
build = {
  type = "builtin",
  -- spec/install_spec.lua checks that every file under lua/ and csrc/ is listed.
  modules = {
    ["ksms.core"] = {
      sources = {
        "csrc/base64.c", "csrc/buffer.c", "csrc/core.c", "csrc/error.c",
        "csrc/frame.c", "csrc/hex.c", "csrc/json.c", "csrc/text.c",
        "csrc/aes.c", "csrc/zlib.c",
      },
      incdirs = { "csrc", "$(ZLIB_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(ZLIB_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "z", "crypto" },
    },
    ["ksms"] = "lua/ksms/init.lua",
    ["ksms.errors"] = "lua/ksms/errors.lua",
    ["ksms.oneshot.codec"] = "lua/ksms/oneshot/codec.lua",
    ["ksms.oneshot.schema"] = "lua/ksms/oneshot/schema.lua",
  },
}
test = {
  type = "command",
  command = "make test",
}
