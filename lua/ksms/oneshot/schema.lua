--- ksms.oneshot.schema: the body fields of every OneShot method, in the order
-- of the provider's tables (004, section 3.3). The encoder writes fields in
-- this order, which is what reproduces the document's frames byte for byte.
-- Fields marked "public client" come from a public client of the same
-- service, not from the document's tables.
-- @module ksms.oneshot.schema
-- @alias _M

local _M = { _VERSION = "0.2.0" }

local fields = {
  PrivateKeyReq = {},
  -- Not shown in the document; the fields a key response is known to carry.
  PrivateKeyRes = { "Result", "PrivateKey" },

  -- Bind bodies travel AES-encrypted; these are the plaintext fields.
  BindReq = { "BindId", "BindPwd", "Version" },
  BindRes = { "Result", "BindId", "Speed", "BeginTime", "EndTime", "EffectiveTime" },
  UnBindReq = { "BindId" },
  UnBindRes = { "Result" },

  AliveReq = {},
  AliveRes = {},

  MsgSendReq = {
    "UserMsgId", "UserMsgSubId", "MsgType", "PhoneNo", "CallbackNo", "TranId",
    "Subject", "Message", "KakaoAdFlag", "KakaoNationCode", "KakaoSenderKey",
    "KakaoTemplateCode", "KakaoTimeout", "KakaoButton", "FileCount",
    "FileType1", "FileName1", "FileType2", "FileName2", "FileType3", "FileName3",
    "UserData", "kakaoImageLink", "kakaoUserKey", "kakaoTitle", "kakaoQuick",
    "kakaoWide", "rcsMessageBaselId", "rcsButton", "rcsHeader", "rcsFooter",
    "rcsCopyAllowed", "rcsAgencyId", "rcsBrandKey", "rcsAgencyKey", "ResellerCode",
  },
  MsgSendRes = {
    "UserMsgId", "UserMsgSubId", "PhoneNo", "MsgType", "Result", "UserData",
    "ResultMessage", -- public client
  },

  ReportReq = {
    "UserMsgId", "UserMsgSubId", "ServerMsgId", "MsgType", "PhoneNo", "Result",
    "Telecom", "DeliveryTime", "UserData",
    "ResultMessage", "UserId", -- public client
  },
  ReportRes = { "UserMsgId", "UserMsgSubId", "ServerMsgId", "Result" },

  SpamReq = { "SpamId", "PhoneNo", "DenyNo" },
  SpamRes = { "SpamId", "PhoneNo", "DenyNo", "Result" },

  ChangePhoneReq = { "ServerMsgId", "PhoneNo", "ChangePhoneNo" },
  ChangePhoneRes = { "ServerMsgId", "PhoneNo", "ChangePhoneNo", "Result" },

  UploadFileNameReq = { "FileExtension" },
  UploadFileNameRes = { "Result", "FileName" },
  -- The method table says UploadFileDataReq, the example and live servers
  -- UploadFileReq; both are known here, the session picks one by option.
  UploadFileReq = { "Data" },
  UploadFileDataReq = { "Data" },
  UploadFileRes = { "Result" },
  UploadFileFinishReq = { "FileName", "FileSize" },
  UploadFileFinishRes = { "Result" },
}

_M.fields = fields

-- The same orders compiled by the core once, for the encoder.
local json_schema = require("ksms.core").json_schema
local compiled = {}
for method, keys in pairs(fields) do compiled[method] = json_schema(keys) end
_M.compiled = compiled

-- Methods whose Body is an AES-128-CBC + Base64 string in plain mode.
_M.encrypted_in_plain_mode = { BindReq = true, BindRes = true, UnBindReq = true, UnBindRes = true }

return _M
