-- ksms.oneshot.codes: every OneShot result code (004, tables 3.3.3.1 and
-- 3.4) with a ksms error category and a Korean and English description.
--
--   codes.login[n]  -> { category, ko, en, retryable }   (BindRes Result)
--   codes.send[n]   -> { category, ko, en, retryable }   (MsgSendRes, ReportReq,
--                                                        upload Result)
--   codes.describe(table, n) -> entry (an "unknown" entry for codes not listed)
--   codes.error(table, n, extra) -> ksms error object (nil for 0, success)
--
-- Categories are those of ksms.errors. 0 is success (category "ok").

local errors = require "ksms.errors"

local _M = { _VERSION = "0.1.0" }

local function e(category, ko, en, retryable)
  return { category = category, ko = ko, en = en, retryable = retryable or false }
end

_M.login = {
  [0] = e("ok", "성공", "success"),
  [1] = e("server", "시스템 오류", "system error", true),
  [2] = e("duplicate", "중복 접속", "duplicate connection (already logged in)", true),
  [3] = e("auth", "허용된 아이피가 아님", "IP address not allowed"),
  [4] = e("auth", "사용자 아이디 오류", "wrong user id"),
  [5] = e("auth", "사용자 암호 오류", "wrong password"),
  [6] = e("auth", "사용이 중지된 아이디", "account suspended"),
  [7] = e("protocol", "버전 오류", "protocol version error"),
  [901] = e("schedule", "발송가능 시간이 아님", "outside the allowed sending hours", true),
  [902] = e("protocol", "로그인 상태가 아님", "not logged in"),
  [903] = e("rate_limit", "발송속도 초과", "sending speed exceeded", true),
  [904] = e("balance", "월 발송건수 부족", "monthly sending quota exhausted"),
  [905] = e("balance", "일일 발송건수 부족", "daily sending quota exhausted"),
  [906] = e("balance", "보유금액 부족(선불)", "insufficient prepaid balance"),
  [908] = e("message_length", "특정필드가 길이 초과", "a field is too long"),
  [909] = e("invalid_input", "첨부파일 갯수 오류", "wrong number of attachments"),
  [910] = e("invalid_input", "첨부파일 크기 오류", "attachment size error"),
  [911] = e("protocol", "수신데이터 오류", "received data error"),
  [913] = e("server", "DB오류", "database error", true),
  [999] = e("unknown", "기타오류", "other error"),
}

_M.send = {
  [0] = e("ok", "성공", "success"),
  [1] = e("protocol", "API 버전오류", "API version error"),
  [2] = e("auth", "인증실패", "authentication failed"),
  [3] = e("protocol", "BIND 미수행", "not bound"),
  [4] = e("server", "호스팅 시스템 내부오류", "hosting system internal error", true),
  [5] = e("invalid_input", "메시지 형식 오류", "message format error"),
  [6] = e("recipient", "유효기간 만료", "validity period expired"),
  [7] = e("recipient", "결번", "number not in service"),
  [8] = e("recipient", "단말기 Power Off", "handset powered off"),
  [9] = e("recipient", "음영", "handset out of coverage"),
  [10] = e("rate_limit", "전송건수 초과", "message count exceeded"),
  [11] = e("rate_limit", "전송속도 초과", "sending speed exceeded", true),
  [12] = e("recipient", "번호이동", "number ported"),
  [13] = e("recipient", "NPDB 불일치", "number portability database mismatch"),
  [14] = e("recipient", "호 처리 실패", "call processing failed"),
  [15] = e("recipient", "단말기 전송 실패", "delivery to the handset failed"),
  [16] = e("invalid_input", "파일이 없음", "file not found"),
  [17] = e("recipient", "통신사 스팸 차단", "blocked as spam by the carrier"),
  [18] = e("invalid_input", "전달 메시지 없음", "no message to deliver"),
  [19] = e("invalid_input", "입력 데이터 오류", "input data error"),
  [20] = e("recipient", "메시지 저장개수 초과", "handset message storage full"),
  [21] = e("invalid_input", "잘못된 파라메터", "invalid parameter"),
  [22] = e("channel", "발신 프로필 키가 유효하지 않음", "invalid sender profile key"),
  [23] = e("channel", "발신 프로필을 찾을 수 없음", "sender profile not found"),
  [24] = e("channel", "삭제된 발신프로필", "sender profile deleted"),
  [25] = e("channel", "차단 상태의 발신프로필", "sender profile blocked"),
  [26] = e("channel", "차단 상태의 옐로아이디", "Yellow ID blocked"),
  [27] = e("channel", "닫힌 상태의 옐로아이디", "Yellow ID closed"),
  [28] = e("channel", "삭제 상태의 옐로아이디", "Yellow ID deleted"),
  [29] = e("server", "메시지 전송 실패", "message delivery failed"),
  [30] = e("template", "템플릿 일치 확인 시 오류", "message does not match the template"),
  [31] = e("recipient", "메시지 수신확인 안됨", "receipt not confirmed"),
  [32] = e("server", "내부 시스템 오류", "internal system error", true),
  [33] = e("recipient", "전화번호 오류", "phone number error"),
  [35] = e("message_length", "메시지 길이 제한 오류", "message too long"),
  [36] = e("template", "템플릿을 찾을 수 없음", "template not found"),
  [37] = e("invalid_input", "메시지에 포함된 이미지를 전송할 수 없음", "the message's image cannot be sent"),
  [38] = e("template", "메시지 버튼이 템플릿과 일치하지 않음", "buttons do not match the template"),
  [39] = e("invalid_input", "특부가사업자 재판매사코드 미입력", "reseller code missing (required for resellers)"),
  [315] = e("sender_number", "세척 미준수", "number cleansing rules not followed"),
  [316] = e("sender_number", "발신번호 미등록", "caller number not registered"),
  [317] = e("sender_number", "발신번호 변작으로 등록된 발신번호", "caller number registered as spoofed"),
  [318] = e("sender_number", "번호도용문자 차단서비스에 가입된 번호", "caller number protected against spoofing"),
  [320] = e("duplicate", "중복발송 에러", "duplicate send"),
  [800] = e("invalid_input", "발송메시지에 허용 되지 않은 문구가 포함됨", "message contains forbidden wording"),
  [900] = e("invalid_input", "대량전송 동보갯수 초과", "too many recipients in one broadcast"),
  [901] = e("schedule", "발송 가능시간이 아님", "outside the allowed sending hours", true),
  [902] = e("protocol", "로그인 상태가 아님", "not logged in"),
  [903] = e("rate_limit", "발송속도 초과", "sending speed exceeded", true),
  [904] = e("balance", "월 제한건수 초과", "monthly limit exceeded"),
  [905] = e("balance", "일 제한건수 초과", "daily limit exceeded"),
  [906] = e("balance", "보유 금액 부족", "insufficient balance"),
  [907] = e("server", "시스템 과부하", "system overloaded", true),
  [908] = e("message_length", "특정필드가 허용된 길이를 초과함", "a field exceeds its allowed length"),
  [909] = e("invalid_input", "첨부파일 파일갯수 오류", "wrong number of attachments"),
  [910] = e("invalid_input", "첨부파일 크기 오류", "attachment size error"),
  [911] = e("invalid_input", "수신데이터 오류입니다.", "received data error"),
  [997] = e("invalid_input", "자체 스팸 차단", "blocked by the provider's spam filter"),
  [998] = e("server", "분배정보 없음", "no routing information"),
  [999] = e("unknown", "기타 오류", "other error"),
}

local UNKNOWN = e("unknown", "알 수 없는 결과코드", "unknown result code")

function _M.describe(tbl, code)
  return tbl[tonumber(code) or -1] or UNKNOWN
end

-- A ksms error for a non-zero result; nil for 0. extra fields are copied in.
function _M.error(tbl, code, extra)
  local n = tonumber(code)
  -- cjson gives Lua 5.4 floats (5.0); the code is a whole number.
  if n and n == math.floor(n) then n = math.floor(n) end
  if n and math.tointeger then n = math.tointeger(n) or n end
  if n == 0 then return nil end
  local d = _M.describe(tbl, n)
  local err = {
    category = d.category == "ok" and "unknown" or d.category,
    code = n or code,
    message = d.en .. " (" .. d.ko .. ")",
    provider = "oneshot",
    retryable = d.retryable,
  }
  if extra then for k, v in pairs(extra) do err[k] = v end end
  return errors.new(err)
end

return _M
