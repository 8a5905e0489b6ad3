-- ksms.providers.ppurio_codes: KTH ppurio's result codes and the delivery
-- report codes of the document's appendix (6.1), each with a category, and
-- the Korean description from the document beside an English one.
-- Report codes: SMS 4xxx, MMS/LMS 66xx, common 9xxx (and -1).

local _M = {}

-- result_code of the send, report and sender-number calls.
_M.result = {
  ["200"] = { ok = true, en = "OK", ko = "OK" },
  ["100"] = { category = "auth", en = "user error (client id or key)", ko = "User Error" },
  ["300"] = { category = "invalid_input", en = "parameter error", ko = "Parameter Error" },
  ["400"] = { category = "server", en = "other error", ko = "Etc Error" },
  ["500"] = { category = "sender_number", en = "caller number not registered (pre-registration rule)",
    ko = "발신번호 사전 등록제에 의한 미등록 차단" },
  ["600"] = { category = "balance", en = "prepaid balance too low", ko = "선불제 충전요금 부족" },
}

-- sendnumber/save answers 500 for a number already registered.
_M.register = {
  ["200"] = _M.result["200"], ["100"] = _M.result["100"], ["300"] = _M.result["300"],
  ["400"] = _M.result["400"],
  ["500"] = { category = "duplicate", en = "number already registered", ko = "중복등록" },
}

local function r(category, en, ko) return { category = category, en = en, ko = ko } end

-- call_status of a delivery report. delivered = true for the two "전달".
_M.report = {
  -- SMS
  ["4100"] = { delivered = true, en = "delivered", ko = "전달" },
  ["4421"] = r("timeout", "timed out", "타임아웃"),
  ["4426"] = r("recipient", "retry limit exceeded", "재시도한도초과"),
  ["4425"] = r("recipient", "handset busy with a call", "단말기호처리중"),
  ["4400"] = r("recipient", "no coverage", "음영지역"),
  ["4401"] = r("recipient", "handset powered off", "단말기전원꺼짐"),
  ["4402"] = r("recipient", "handset message storage full", "단말기메시지저장초과"),
  ["4410"] = r("recipient", "wrong number", "잘못된번호"),
  ["4422"] = r("recipient", "handset suspended", "단말기일시정지"),
  ["4427"] = r("recipient", "other handset problem", "기타단말기문제"),
  ["4405"] = r("recipient", "handset busy", "단말기 busy"),
  ["4423"] = r("recipient", "handset refuses messages", "단말기착신거부"),
  ["4412"] = r("recipient", "reception refused", "착신거절"),
  ["4411"] = r("server", "number portability database error", "NPDB 에러"),
  ["4428"] = r("server", "system error", "시스템에러"),
  ["4404"] = r("recipient", "subscriber location unknown", "가입자위치정보없음"),
  ["4413"] = r("server", "SMSC format error", "SMSC 형식오류"),
  ["4414"] = r("recipient", "not a subscriber, unused or suspended number", "비가입자, 결번, 서비스정지"),
  ["4424"] = r("recipient", "handset does not support URL SMS", "URL SMS 미지원폰"),
  ["4403"] = r("recipient", "message deleted", "메시지삭제됨"),
  ["4430"] = r("rate_limit", "blocked as spam", "스팸"),
  ["4431"] = r("recipient", "recipient refuses (spam block)", "발송제한 수신거부 (스팸)"),
  ["4432"] = r("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["4433"] = r("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["4434"] = r("sender_number", "caller number not pre-registered", "발신번호 사전 등록제에 의한 미등록 차단"),
  ["4435"] = r("sender_number", "caller number reported to KISA as spam", "KISA 에 스팸 신고된 발신번호 사용"),
  ["4436"] = r("sender_number", "caller number breaks the registration rules", "발신번호 사전 등록제 번호규칙 위반"),
  ["4420"] = r("unknown", "other error", "기타에러"),
  -- MMS / LMS
  ["6600"] = { delivered = true, en = "delivered", ko = "전달" },
  ["6601"] = r("timeout", "timed out", "타임아웃"),
  ["6602"] = r("recipient", "handset busy with a call", "핸드폰호처리중"),
  ["6603"] = r("recipient", "no coverage", "음영지역"),
  ["6604"] = r("recipient", "handset powered off", "전원이꺼져있음"),
  ["6605"] = r("recipient", "handset message storage full", "메시지저장개수초과"),
  ["6606"] = r("recipient", "wrong number", "잘못된번호"),
  ["6607"] = r("recipient", "service suspended", "서비스일시정지"),
  ["6608"] = r("recipient", "other handset problem", "기타단말기문제"),
  ["6609"] = r("recipient", "reception refused", "착신거절"),
  ["6610"] = r("unknown", "other error", "기타에러"),
  ["6611"] = r("server", "carrier SMC format error", "통신사의 SMC 형식오류"),
  ["6612"] = r("server", "gateway format error", "게이트웨이의형식오류"),
  ["6613"] = r("recipient", "handset cannot receive this service", "서비스불가단말기"),
  ["6614"] = r("recipient", "handset cannot take calls", "핸드폰호불가상태"),
  ["6615"] = r("server", "deleted by the SMC operator", "SMC 운영자에의해삭제"),
  ["6616"] = r("rate_limit", "carrier message queue full", "통신사의메시지큐초과"),
  ["6617"] = r("rate_limit", "blocked as spam by the carrier", "통신사의스팸처리"),
  ["6618"] = r("rate_limit", "blocked as spam by the Fair Trade Commission", "공정위의스팸처리"),
  ["6619"] = r("rate_limit", "blocked as spam by the gateway", "게이트웨이의스팸처리"),
  ["6620"] = r("rate_limit", "too many messages", "발송건수초과"),
  ["6621"] = r("message_length", "message too long", "메시지의길이초과"),
  ["6622"] = r("recipient", "wrong number format", "잘못된번호형식"),
  ["6623"] = r("invalid_input", "wrong data format", "잘못된데이터형식"),
  ["6624"] = r("server", "MMS information not found", "MMS 정보를찾을수없음"),
  ["6625"] = r("server", "number portability database error", "NPDB 에러"),
  ["6626"] = r("recipient", "080 opt-out (spam)", "080 수신거부 (SPAM)"),
  ["6627"] = r("recipient", "recipient refuses (spam block)", "발신제한 수신거부 (SPAM)"),
  ["6628"] = r("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["6629"] = r("sender_number", "caller number protected against spoofing (personal)",
    "번호도용문자 차단서비스에 가입된 발신번호 (개인) 사용"),
  ["6630"] = r("recipient", "number cannot be served", "서비스 불가 번호"),
  ["6631"] = r("sender_number", "caller number not pre-registered", "발신번호 사전 등록제에 의한 미등록 차단"),
  ["6632"] = r("sender_number", "caller number reported to KISA as spam", "KISA 에 스팸 신고된 발신번호 사용"),
  ["6633"] = r("sender_number", "caller number breaks the registration rules", "발신번호 사전 등록제 번호규칙 위반"),
  ["6670"] = r("invalid_input", "image file too large", "이미지파일크기제한"),
  -- Common
  ["9903"] = r("balance", "prepaid user may not send", "선불사용자 사용금지"),
  ["9904"] = r("schedule", "blocked time (date)", "Block time (날짜제한)"),
  ["9082"] = r("server", "sending released", "발송해제"),
  ["9083"] = r("auth", "IP blocked", "IP 차단"),
  ["9023"] = r("sender_number", "callback error", "Callback error"),
  ["9905"] = r("schedule", "blocked time (day of week)", "Block time (요일제한)"),
  ["9010"] = r("auth", "wrong id", "아이디 틀림"),
  ["9011"] = r("auth", "wrong password", "비밀번호 틀림"),
  ["9012"] = r("rate_limit", "too many concurrent connections", "중복접속량 많음"),
  ["9013"] = r("schedule", "send time already past", "발송시간 지난 데이터"),
  ["9014"] = r("timeout", "timed out waiting for the report", "시간제한 (리포트 수신대기 timeout)"),
  ["9020"] = r("invalid_input", "wrong data format", "Wrong Data Format"),
  ["9021"] = r("invalid_input", "wrong data format", ""),
  ["9022"] = r("invalid_input", "wrong data format (cinfo has special characters or blanks)",
    "Wrong Data Format (cinfo 가 특수 문자/, 공백을 포함하고 있다)"),
  ["9080"] = r("auth", "user denied", "Deny User Ack"),
  ["9214"] = r("recipient", "wrong phone number", "Wrong Phone Num"),
  ["9311"] = r("invalid_input", "fax file not found", "Fax File Not Found"),
  ["9908"] = r("balance", "prepaid user restriction (phone, fax)", "PHONE, FAX 선불사용자 제한기능"),
  ["9090"] = r("unknown", "other error", "기타에러"),
  ["-1"] = r("invalid_input", "wrong data format, sending error", "잘못된 데이터 형식, 발송오류"),
}

return _M
