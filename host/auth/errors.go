package auth

import (
	"errors"
	"fmt"
)

// Reason says why a token was refused. It is safe to show to the client:
// it names the check that failed, never a key or a secret.
type Reason string

// The reasons a token is refused, in the order they are checked (see the
// package documentation).
const (
	ReasonMissing       Reason = "missing"               // no token where this integration reads one
	ReasonTooLarge      Reason = "too_large"             // over Options.MaxTokenBytes
	ReasonMalformed     Reason = "malformed"             // not a compact JWS with JSON header and claims
	ReasonAlgorithm     Reason = "algorithm_not_allowed" // "none", an unknown name, or not in Options.Algorithms
	ReasonUnknownKey    Reason = "unknown_key"           // no configured or published key fits the token
	ReasonBadSignature  Reason = "bad_signature"         // the signature does not verify
	ReasonMissingClaim  Reason = "missing_claim"         // exp (or iss, aud when required) absent
	ReasonExpired       Reason = "expired"               // exp is past (beyond the leeway)
	ReasonNotYetValid   Reason = "not_yet_valid"         // nbf or iat is in the future (beyond the leeway)
	ReasonWrongIssuer   Reason = "wrong_issuer"          // iss is not Options.Issuer
	ReasonWrongAudience Reason = "wrong_audience"        // aud names none of Options.Audience
)

// Error is a refused token. Reason and Message are meant for the client
// (Message is one sentence that names no key, secret, key ID or URL); the
// wrapped cause, which Error() includes, is for the server's log.
//
// errors.Is(err, auth.ErrExpired) and the other sentinels below match any
// *Error with the same Reason.
type Error struct {
	Reason  Reason
	Message string
	cause   error
}

// Sentinels for errors.Is, one per Reason.
var (
	ErrMissing       = &Error{Reason: ReasonMissing}
	ErrTooLarge      = &Error{Reason: ReasonTooLarge}
	ErrMalformed     = &Error{Reason: ReasonMalformed}
	ErrAlgorithm     = &Error{Reason: ReasonAlgorithm}
	ErrUnknownKey    = &Error{Reason: ReasonUnknownKey}
	ErrBadSignature  = &Error{Reason: ReasonBadSignature}
	ErrMissingClaim  = &Error{Reason: ReasonMissingClaim}
	ErrExpired       = &Error{Reason: ReasonExpired}
	ErrNotYetValid   = &Error{Reason: ReasonNotYetValid}
	ErrWrongIssuer   = &Error{Reason: ReasonWrongIssuer}
	ErrWrongAudience = &Error{Reason: ReasonWrongAudience}
)

func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("auth: %s: %s (%v)", e.Reason, e.Message, e.cause)
	}
	return fmt.Sprintf("auth: %s: %s", e.Reason, e.Message)
}

func (e *Error) Unwrap() error { return e.cause }

// Is matches the sentinel of e's Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// refuse builds an *Error; cause (may be nil) is kept for the log only.
func refuse(r Reason, cause error, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...), cause: cause}
}

// ClientMessage is what may be told to the client about err: the Message of
// an *Error, and a fixed sentence for anything else (an error that is not a
// refusal may carry details the client must not see).
func ClientMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "the token could not be verified"
}

// OptionError is an Options field that New refuses. Field is the Go field
// name (Index the entry of a list field, else -1), so a configuration layer
// can point at the key and its file:line.
type OptionError struct {
	Field string
	Index int
	Msg   string
}

func (e *OptionError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("auth: %s[%d]: %s", e.Field, e.Index, e.Msg)
	}
	return fmt.Sprintf("auth: %s: %s", e.Field, e.Msg)
}

func optErr(field string, format string, args ...any) *OptionError {
	return &OptionError{Field: field, Index: -1, Msg: fmt.Sprintf(format, args...)}
}

func optErrAt(field string, i int, format string, args ...any) *OptionError {
	return &OptionError{Field: field, Index: i, Msg: fmt.Sprintf(format, args...)}
}
