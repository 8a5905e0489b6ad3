--- ksms.providers.ppurio_codes: KTH ppurio's result codes and the delivery
-- report codes of the document's appendix (6.1), each with a category, and
-- the Korean description from the document beside an English one.
-- Report codes: SMS 4xxx, MMS/LMS 66xx, common 9xxx (and -1).
-- Entries have the one shape of ksms.codes.
-- @module ksms.providers.ppurio_codes
-- @alias _M

local codes = require "ksms.codes"
local ok, fail = codes.ok, codes.fail

local _M = {}

-- result_code of the send, report and sender-number calls.
_M.result = {
  ["200"] = ok("OK", "OK"),
  ["100"] = fail("auth", "user error (client id or key)", "User Error"),
  ["300"] = fail("invalid_input", "parameter error", "Parameter Error"),
  ["400"] = fail("server", "other error", "Etc Error"),
  ["500"] = fail("sender_number", "caller number not registered (pre-registration rule)", "발신번호 사전 등록제에 의한 미등록 차단"),
  ["600"] = fail("balance", "prepaid balance too low", "선불제 충전요금 부족"),
}

-- sendnumber/save answers 500 for a number already registered.
_M.register = {
  ["200"] = _M.result["200"], ["100"] = _M.result["100"], ["300"] = _M.result["300"],
  ["400"] = _M.result["400"],
  ["500"] = fail("duplicate", "number already registered", "중복등록"),
}

-- call_status of a delivery report: the two "전달" are the ok entries.
_M.report = {
  -- SMS
  ["4100"] = ok("delivered", "전달"),
  ["4421"] = fail("timeout", "timed out", "타임아웃"),
  ["4426"] = fail("recipient", "retry limit exceeded", "재시도한도초과"),
  ["4425"] = fail("recipient", "handset busy with a call", "단말기호처리중"),
  ["4400"] = fail("recipient", "no coverage", "음영지역"),
  ["4401"] = fail("recipient", "handset powered off", "단말기전원꺼짐"),
  ["4402"] = fail("recipient", "handset message storage full", "단말기메시지저장초과"),
  ["4410"] = fail("recipient", "wrong number", "잘못된번호"),
  ["4422"] = fail("recipient", "handset suspended", "단말기일시정지"),
  ["4427"] = fail("recipient", "other handset problem", "기타단말기문제"),
  ["4405"] = fail("recipient", "handset busy", "단말기 busy"),
  ["4423"] = fail("recipient", "handset refuses messages", "단말기착신거부"),
  ["4412"] = fail("recipient", "reception refused", "착신거절"),
  ["4411"] = fail("server", "number portability database error", "NPDB 에러"),
  ["4428"] = fail("server", "system error", "시스템에러"),
  ["4404"] = fail("recipient", "subscriber location unknown", "가입자위치정보없음"),
  ["4413"] = fail("server", "SMSC format error", "SMSC 형식오류"),
  ["4414"] = fail("recipient", "not a subscriber, unused or suspended number", "비가입자, 결번, 서비스정지"),
  ["4424"] = fail("recipient", "handset does not support URL SMS", "URL SMS 미지원폰"),
  ["4403"] = fail("recipient", "message deleted", "메시지삭제됨"),
  ["4430"] = fail("rate_limit", "blocked as spam", "스팸"),
  ["4431"] = fail("recipient", "recipient refuses (spam block)", "발송제한 수신거부 (스팸)"),
  ["4432"] = fail("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["4433"] = fail("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["4434"] = fail("sender_number", "caller number not pre-registered", "발신번호 사전 등록제에 의한 미등록 차단"),
  ["4435"] = fail("sender_number", "caller number reported to KISA as spam", "KISA 에 스팸 신고된 발신번호 사용"),
  ["4436"] = fail("sender_number", "caller number breaks the registration rules", "발신번호 사전 등록제 번호규칙 위반"),
  ["4420"] = fail("unknown", "other error", "기타에러"),
  -- MMS / LMS
  ["6600"] = ok("delivered", "전달"),
  ["6601"] = fail("timeout", "timed out", "타임아웃"),
  ["6602"] = fail("recipient", "handset busy with a call", "핸드폰호처리중"),
  ["6603"] = fail("recipient", "no coverage", "음영지역"),
  ["6604"] = fail("recipient", "handset powered off", "전원이꺼져있음"),
  ["6605"] = fail("recipient", "handset message storage full", "메시지저장개수초과"),
  ["6606"] = fail("recipient", "wrong number", "잘못된번호"),
  ["6607"] = fail("recipient", "service suspended", "서비스일시정지"),
  ["6608"] = fail("recipient", "other handset problem", "기타단말기문제"),
  ["6609"] = fail("recipient", "reception refused", "착신거절"),
  ["6610"] = fail("unknown", "other error", "기타에러"),
  ["6611"] = fail("server", "carrier SMC format error", "통신사의 SMC 형식오류"),
  ["6612"] = fail("server", "gateway format error", "게이트웨이의형식오류"),
  ["6613"] = fail("recipient", "handset cannot receive this service", "서비스불가단말기"),
  ["6614"] = fail("recipient", "handset cannot take calls", "핸드폰호불가상태"),
  ["6615"] = fail("server", "deleted by the SMC operator", "SMC 운영자에의해삭제"),
  ["6616"] = fail("rate_limit", "carrier message queue full", "통신사의메시지큐초과"),
  ["6617"] = fail("rate_limit", "blocked as spam by the carrier", "통신사의스팸처리"),
  ["6618"] = fail("rate_limit", "blocked as spam by the Fair Trade Commission", "공정위의스팸처리"),
  ["6619"] = fail("rate_limit", "blocked as spam by the gateway", "게이트웨이의스팸처리"),
  ["6620"] = fail("rate_limit", "too many messages", "발송건수초과"),
  ["6621"] = fail("message_length", "message too long", "메시지의길이초과"),
  ["6622"] = fail("recipient", "wrong number format", "잘못된번호형식"),
  ["6623"] = fail("invalid_input", "wrong data format", "잘못된데이터형식"),
  ["6624"] = fail("server", "MMS information not found", "MMS 정보를찾을수없음"),
  ["6625"] = fail("server", "number portability database error", "NPDB 에러"),
  ["6626"] = fail("recipient", "080 opt-out (spam)", "080 수신거부 (SPAM)"),
  ["6627"] = fail("recipient", "recipient refuses (spam block)", "발신제한 수신거부 (SPAM)"),
  ["6628"] = fail("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["6629"] = fail("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["6630"] = fail("recipient", "number cannot be served", "서비스 불가 번호"),
  ["6631"] = fail("sender_number", "caller number not pre-registered", "발신번호 사전 등록제에 의한 미등록 차단"),
  ["6632"] = fail("sender_number", "caller number reported to KISA as spam", "KISA 에 스팸 신고된 발신번호 사용"),
  ["6633"] = fail("sender_number", "caller number breaks the registration rules", "발신번호 사전 등록제 번호규칙 위반"),
  ["6670"] = fail("invalid_input", "image file too large", "이미지파일크기제한"),
  -- Common
  ["9903"] = fail("balance", "prepaid user may not send", "선불사용자 사용금지"),
  ["9904"] = fail("schedule", "blocked time (date)", "Block time (날짜제한)"),
  ["9082"] = fail("server", "sending released", "발송해제"),
  ["9083"] = fail("auth", "IP blocked", "IP 차단"),
  ["9023"] = fail("sender_number", "callback error", "Callback error"),
  ["9905"] = fail("schedule", "blocked time (day of week)", "Block time (요일제한)"),
  ["9010"] = fail("auth", "wrong id", "아이디 틀림"),
  ["9011"] = fail("auth", "wrong password", "비밀번호 틀림"),
  ["9012"] = fail("rate_limit", "too many concurrent connections", "중복접속량 많음"),
  ["9013"] = fail("schedule", "send time already past", "발송시간 지난 데이터"),
  ["9014"] = fail("timeout", "timed out waiting for the report", "시간제한 (리포트 수신대기 timeout)"),
  ["9020"] = fail("invalid_input", "wrong data format", "Wrong Data Format"),
  ["9021"] = fail("invalid_input", "wrong data format", ""),
  ["9022"] = fail("invalid_input", "wrong data format (cinfo has special characters or blanks)",
    "Wrong Data Format (cinfo 가 특수 문자/, 공백을 포함하고 있다)"),
  ["9080"] = fail("auth", "user denied", "Deny User Ack"),
  ["9214"] = fail("recipient", "wrong phone number", "Wrong Phone Num"),
  ["9311"] = fail("invalid_input", "fax file not found", "Fax File Not Found"),
  ["9908"] = fail("balance", "prepaid user restriction (phone, fax)", "PHONE, FAX 선불사용자 제한기능"),
  ["9090"] = fail("unknown", "other error", "기타에러"),
  ["-1"] = fail("invalid_input", "wrong data format, sending error", "잘못된 데이터 형식, 발송오류"),
}

return _M
