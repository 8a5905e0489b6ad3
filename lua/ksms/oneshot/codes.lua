--- ksms.oneshot.codes: every OneShot result code (004, tables 3.3.3.1 and
-- 3.4) with a ksms error category and an English and Korean description,
-- in the one shape of ksms.codes.
--
--   codes.login[n]  -> { category, en, ko, retryable }   (BindRes Result)
--   codes.send[n]   -> { category, en, ko, retryable }   (MsgSendRes, ReportReq,
--                                                        upload Result)
--   codes.describe(table, n) -> entry (an "unknown" entry for codes not listed)
--   codes.error(table, n, extra) -> ksms error object (nil for 0, success)
--
-- 0 is success (category "ok"). An undocumented code is ksms.codes'
-- policy: "unknown", not retryable, and maybe_sent = true for the send
-- table (a MsgSendRes nobody can read may be a message accepted).
-- @module ksms.oneshot.codes
-- @alias _M

local shared = require "ksms.codes"

local tonumber = tonumber
local ok, fail = shared.ok, shared.fail

local _M = { _VERSION = "0.2.0" }

_M.login = {
  [0] = ok("success", "성공"),
  [1] = fail("server", "system error", "시스템 오류", true),
  [2] = fail("duplicate", "duplicate connection (already logged in)", "중복 접속", true),
  [3] = fail("auth", "IP address not allowed", "허용된 아이피가 아님"),
  [4] = fail("auth", "wrong user id", "사용자 아이디 오류"),
  [5] = fail("auth", "wrong password", "사용자 암호 오류"),
  [6] = fail("auth", "account suspended", "사용이 중지된 아이디"),
  [7] = fail("protocol", "protocol version error", "버전 오류"),
  [901] = fail("schedule", "outside the allowed sending hours", "발송가능 시간이 아님", true),
  [902] = fail("protocol", "not logged in", "로그인 상태가 아님"),
  [903] = fail("rate_limit", "sending speed exceeded", "발송속도 초과", true),
  [904] = fail("balance", "monthly sending quota exhausted", "월 발송건수 부족"),
  [905] = fail("balance", "daily sending quota exhausted", "일일 발송건수 부족"),
  [906] = fail("balance", "insufficient prepaid balance", "보유금액 부족(선불)"),
  [908] = fail("message_length", "a field is too long", "특정필드가 길이 초과"),
  [909] = fail("invalid_input", "wrong number of attachments", "첨부파일 갯수 오류"),
  [910] = fail("invalid_input", "attachment size error", "첨부파일 크기 오류"),
  [911] = fail("protocol", "received data error", "수신데이터 오류"),
  [913] = fail("server", "database error", "DB오류", true),
  [999] = fail("unknown", "other error", "기타오류"),
}

_M.send = {
  [0] = ok("success", "성공"),
  [1] = fail("protocol", "API version error", "API 버전오류"),
  [2] = fail("auth", "authentication failed", "인증실패"),
  [3] = fail("protocol", "not bound", "BIND 미수행"),
  [4] = fail("server", "hosting system internal error", "호스팅 시스템 내부오류", true),
  [5] = fail("invalid_input", "message format error", "메시지 형식 오류"),
  [6] = fail("recipient", "validity period expired", "유효기간 만료"),
  [7] = fail("recipient", "number not in service", "결번"),
  [8] = fail("recipient", "handset powered off", "단말기 Power Off"),
  [9] = fail("recipient", "handset out of coverage", "음영"),
  [10] = fail("rate_limit", "message count exceeded", "전송건수 초과"),
  [11] = fail("rate_limit", "sending speed exceeded", "전송속도 초과", true),
  [12] = fail("recipient", "number ported", "번호이동"),
  [13] = fail("recipient", "number portability database mismatch", "NPDB 불일치"),
  [14] = fail("recipient", "call processing failed", "호 처리 실패"),
  [15] = fail("recipient", "delivery to the handset failed", "단말기 전송 실패"),
  [16] = fail("invalid_input", "file not found", "파일이 없음"),
  [17] = fail("recipient", "blocked as spam by the carrier", "통신사 스팸 차단"),
  [18] = fail("invalid_input", "no message to deliver", "전달 메시지 없음"),
  [19] = fail("invalid_input", "input data error", "입력 데이터 오류"),
  [20] = fail("recipient", "handset message storage full", "메시지 저장개수 초과"),
  [21] = fail("invalid_input", "invalid parameter", "잘못된 파라메터"),
  [22] = fail("channel", "invalid sender profile key", "발신 프로필 키가 유효하지 않음"),
  [23] = fail("channel", "sender profile not found", "발신 프로필을 찾을 수 없음"),
  [24] = fail("channel", "sender profile deleted", "삭제된 발신프로필"),
  [25] = fail("channel", "sender profile blocked", "차단 상태의 발신프로필"),
  [26] = fail("channel", "Yellow ID blocked", "차단 상태의 옐로아이디"),
  [27] = fail("channel", "Yellow ID closed", "닫힌 상태의 옐로아이디"),
  [28] = fail("channel", "Yellow ID deleted", "삭제 상태의 옐로아이디"),
  [29] = fail("server", "message delivery failed", "메시지 전송 실패"),
  [30] = fail("template", "message does not match the template", "템플릿 일치 확인 시 오류"),
  [31] = fail("recipient", "receipt not confirmed", "메시지 수신확인 안됨"),
  [32] = fail("server", "internal system error", "내부 시스템 오류", true),
  [33] = fail("recipient", "phone number error", "전화번호 오류"),
  [35] = fail("message_length", "message too long", "메시지 길이 제한 오류"),
  [36] = fail("template", "template not found", "템플릿을 찾을 수 없음"),
  [37] = fail("invalid_input", "the message's image cannot be sent", "메시지에 포함된 이미지를 전송할 수 없음"),
  [38] = fail("template", "buttons do not match the template", "메시지 버튼이 템플릿과 일치하지 않음"),
  [39] = fail("invalid_input", "reseller code missing (required for resellers)", "특부가사업자 재판매사코드 미입력"),
  [315] = fail("sender_number", "number cleansing rules not followed", "세척 미준수"),
  [316] = fail("sender_number", "caller number not registered", "발신번호 미등록"),
  [317] = fail("sender_number", "caller number registered as spoofed", "발신번호 변작으로 등록된 발신번호"),
  [318] = fail("sender_number", "caller number protected against spoofing", "번호도용문자 차단서비스에 가입된 번호"),
  [320] = fail("duplicate", "duplicate send", "중복발송 에러"),
  [800] = fail("invalid_input", "message contains forbidden wording", "발송메시지에 허용 되지 않은 문구가 포함됨"),
  [900] = fail("invalid_input", "too many recipients in one broadcast", "대량전송 동보갯수 초과"),
  [901] = fail("schedule", "outside the allowed sending hours", "발송 가능시간이 아님", true),
  [902] = fail("protocol", "not logged in", "로그인 상태가 아님"),
  [903] = fail("rate_limit", "sending speed exceeded", "발송속도 초과", true),
  [904] = fail("balance", "monthly limit exceeded", "월 제한건수 초과"),
  [905] = fail("balance", "daily limit exceeded", "일 제한건수 초과"),
  [906] = fail("balance", "insufficient balance", "보유 금액 부족"),
  [907] = fail("server", "system overloaded", "시스템 과부하", true),
  [908] = fail("message_length", "a field exceeds its allowed length", "특정필드가 허용된 길이를 초과함"),
  [909] = fail("invalid_input", "wrong number of attachments", "첨부파일 파일갯수 오류"),
  [910] = fail("invalid_input", "attachment size error", "첨부파일 크기 오류"),
  [911] = fail("invalid_input", "received data error", "수신데이터 오류입니다."),
  [997] = fail("invalid_input", "blocked by the provider's spam filter", "자체 스팸 차단"),
  [998] = fail("server", "no routing information", "분배정보 없음"),
  [999] = fail("unknown", "other error", "기타 오류"),
}

local UNKNOWN = fail("unknown", "unknown result code", "알 수 없는 결과코드")

--- A OneShot result code's entry (unknown codes get the one unknown entry).
-- @tparam table tbl
-- @param code
-- @treturn table
function _M.describe(tbl, code)
  return (shared.lookup(tbl, tonumber(code) or code)) or UNKNOWN
end

--- A ksms error for a non-zero result; nil for 0. extra fields are copied in.
function _M.error(tbl, code, extra)
  local n = tonumber(code) or code
  return shared.error("oneshot", tbl, n, extra, tbl ~= _M.login)
end

return _M
