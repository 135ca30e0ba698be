package engine

import (
	"encoding/json"
)

// CloseCode is a WebSocket close status (RFC 6455 section 7.4).
type CloseCode uint16

// The close codes SPEC section 5.8 uses.
const (
	CloseNormal        CloseCode = 1000 // after should_close
	CloseGoingAway     CloseCode = 1001 // the server shuts down
	CloseProtocolError CloseCode = 1002 // the client broke the WebSocket protocol
	CloseUnsupported   CloseCode = 1003 // a binary frame
	CloseInvalidData   CloseCode = 1007 // not JSON, not an object, too deep, invalid UTF-8
	ClosePolicy        CloseCode = 1008 // failed authorisation, auth timeout, a broken limit
	CloseTooBig        CloseCode = 1009 // a message over max_message_bytes
	CloseInternal      CloseCode = 1011 // a script error, timeout or malformed action
)

// Error codes sent in {"id":"error","error":<code>} besides the script and
// data codes of luabridge.
const (
	CodeBinaryFrame       = "binary_frame"
	CodeTooLarge          = "too_large"
	CodeInvalidUTF8       = "invalid_utf8"
	CodeAuthTimeout       = "auth_timeout"
	CodeBrokerUnavailable = "broker_unavailable"
	CodeBrokerConflict    = "broker_conflict"
	// CodeBrokerOutcomeUnknown: the broker stopped answering after the
	// update was sent: it may or may not have been committed.
	CodeBrokerOutcomeUnknown = "broker_outcome_unknown"
	CodeInternal             = "internal_error"
	// CodeUnauthenticated: no valid token ([integration.auth]); the
	// message says why (expired, bad signature, wrong audience...).
	CodeUnauthenticated = "unauthenticated"
	// CodeTokenExpired: the token of an open connection expired.
	CodeTokenExpired = "token_expired"
	// CodeSlowClient: the connection cannot keep up (its broker messages
	// pile up, or, in the transport, its unsent bytes).
	CodeSlowClient = "slow_client"
)

// errorFrame is the JSON the client gets before most closes:
// {"id":"error","error":"<code>","message":"..."}.
func errorFrame(code, message string) []byte {
	b, _ := json.Marshal(struct {
		ID      string `json:"id"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"error", code, message})
	return b
}
