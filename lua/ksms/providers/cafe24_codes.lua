--- ksms.providers.cafe24_codes: Cafe24 SMS hosting's result codes (003,
-- "결과코드"): the SMS table and the LMS/MMS table, each code with a
-- category and the document's Korean description beside an English one.
-- @module ksms.providers.cafe24_codes
-- @alias _M

-- Entries have the one shape of ksms.codes.

local codes = require "ksms.codes"
local ok, fail = codes.ok, codes.fail

local _M = {}

_M.sms = {
  success = ok("sent", "즉시 전송 성공"),
  reserved = ok("reserved", "예약 성공"),
  ["-100"] = fail("server", "server error", "서버 에러"),
  ["-101"] = fail("invalid_input", "missing variables", "변수 부족 에러"),
  ["-102"] = fail("auth", "authentication error", "인증 에러"),
  ["-105"] = fail("schedule", "reservation time error", "예약 시간 에러"),
  ["-110"] = fail("recipient", "1000 or more recipients cannot be sent", "1000건 이상 발송 불가"),
  ["-114"] = fail("sender_number", "caller number not registered or verified", "등록/인증되지 않은 발신번호"),
  ["-201"] = fail("balance", "not enough SMS credits", "sms 건수 부족 에러"),
  ["-202"] = fail("invalid_input", "the character '됬' (or another outside EUC-KR) cannot be sent", "문자 '됬'은 사용불가능한 문자입니다."),
  ["-203"] = fail("server", "bulk sending error", "sms 대량 발송 에러"),
  ["0001"] = fail("server", "service number error", "서비스 번호 오류"),
  ["0002"] = fail("invalid_input", "message incomplete", "메지시 구성 결여"),
  ["0003"] = fail("invalid_input", "message format error", "메시지 포맷 오류"),
  ["0004"] = fail("message_length", "message body length error", "메시지 body길이 오류"),
  ["0005"] = fail("server", "connection needed", "Connect 필요"),
  ["0099"] = fail("server", "other error (database or system failure)", "기타 오류(DB오류시스템장애)"),
  ["0044"] = fail("invalid_input", "blocked as spam (gambling, adult words)", "스팸메시지 차단"),
  ["3201"] = fail("schedule", "send time error", "발송시각 오류"),
  ["3202"] = fail("recipient", "phone number error", "폰넘버 오류"),
  ["3203"] = fail("invalid_input", "message Base64 encoding error", "SMS 메시지 Base64 Encoding 오류"),
  ["3204"] = fail("invalid_input", "callback Base64 encoding error", "CallBack메시지 Base64 Encoding 오류"),
  ["3205"] = fail("recipient", "number format error", "번호형식 오류"),
  ["3206"] = ok("sent", "전송 성공"),
  ["3207"] = fail("recipient", "not a subscriber, unused or suspended number", "비가입자 결번 서비스정지"),
  ["3208"] = fail("recipient", "handset powered off", "단말기 Power-off 상태"),
  ["3209"] = fail("recipient", "no coverage", "음영"),
  ["3210"] = fail("recipient", "handset message storage full", "단말기 메시지 FULL"),
  ["3211"] = fail("server", "other error (carrier)", "기타에러(이통사)"),
  ["3214"] = fail("server", "other error (wireless network)", "기타에러(무선망)"),
  ["3213"] = fail("recipient", "number ported", "번호이동관련"),
  ["3217"] = fail("invalid_input", "combined message format error", "조합메시지 형식오류"),
  ["3218"] = fail("duplicate", "duplicate message", "메시지 중복 오류"),
  ["3219"] = fail("rate_limit", "monthly sending limit exceeded", "월 송신건수 초과"),
  ["3220"] = fail("unknown", "unknown", "UNKNOWN"),
  ["3221"] = fail("recipient", "recipient number error (digit count)", "착신번호 에러(자리수 에러)"),
  ["3222"] = fail("recipient", "recipient number error (no such prefix)", "착신번호 에러(없는 국번)"),
  ["3223"] = fail("invalid_input", "advertisement lacks the opt-out part", "수신거부 메시지 부분 없음"),
  ["3224"] = fail("schedule", "advertisement after 21:00", "21시 이후 광고"),
}

_M.lms = {
  success = _M.sms.success,
  reserved = _M.sms.reserved,
  ["1"] = fail("server", "system failure", "시스템 장애"),
  ["41"] = fail("server", "MMS content could not be made", "MMS content 생성 실패"),
  ["42"] = fail("server", "MMS result code error", "MMS 결과코드 에러"),
  ["112"] = fail("timeout", "report reception time expired", "레포트 수신 시간 만료"),
  ["114"] = fail("sender_number", "blocked against number spoofing", "번호도용/변작방지 차단"),
  ["116"] = fail("sender_number", "number rules violated", "번호 세칙 위반"),
  ["202"] = fail("recipient", "no such subscriber", "착신가입자없음"),
  ["203"] = fail("recipient", "not a subscriber, unused or suspended number", "비가입자, 결번, 서비스정지 등 수신자 오류"),
  ["204"] = fail("recipient", "handset powered off", "단말기 전원 꺼짐"),
  ["205"] = fail("recipient", "no coverage", "음영 지역"),
  ["206"] = fail("recipient", "handset message storage full", "단말기 메시지 FULL"),
  ["207"] = fail("recipient", "handset error", "단말기 오류"),
  ["209"] = fail("recipient", "subscriber ported to another carrier", "번호이동된 가입자"),
  ["210"] = fail("recipient", "SMS forwarding limit exceeded", "SMS 착신전환회수초과"),
  ["211"] = fail("recipient", "expired", "기간만료"),
  ["212"] = fail("server", "carrier error", "이통사 오류"),
  ["216"] = fail("recipient", "recipient number error", "수신번호 오류"),
  ["245"] = fail("recipient", "refused by the handset", "메시지 전송불가(단말기에서 착신 거부)"),
  ["253"] = fail("recipient", "sending failed (wireless), handset suspended", "전송 실패(무선망), 단말기 일시정지"),
  ["254"] = fail("recipient", "sending failed (wireless to handset), no VLR", "전송 실패(무선망 -> 단말기단), 가입자 VLR 없음"),
  ["2003"] = fail("recipient", "handset not supported", "미지원 단말"),
  ["4005"] = fail("server", "carrier service error", "이통사 서비스 에러"),
  ["4007"] = fail("invalid_input", "client error", "클라이언트 오류"),
  ["4008"] = fail("rate_limit", "carrier server overloaded", "통신사 서버 과부하"),
  ["4301"] = fail("recipient", "not a subscriber (KTF), unused number", "미 가입자 에러 오류(KTF), 결번"),
  ["4305"] = fail("recipient", "handset error", "단말기 오류"),
  ["4307"] = fail("recipient", "subscriber suspended", "일시정지 가입자 오류"),
  ["6072"] = fail("recipient", "handset does not support MMS", "MMS 미지원단말기"),
  ["8012"] = fail("server", "SKT MMS error", "SKT MMS 오류"),
  ["8200"] = fail("recipient", "handset error", "단말기 오류"),
  ["9999"] = fail("unknown", "unknown error", "알 수 없는 에러"),
}

return _M
