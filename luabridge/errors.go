package luabridge

import (
	"errors"
	"fmt"
)

// Kind classifies a ScriptError; each is also the error code sent to the
// client in {"id":"error","error":<code>}.
type Kind string

const (
	// KindRuntime: the function raised an error (or the state panicked).
	KindRuntime Kind = "script_error"
	// KindTimeout: the call ran past its budget.
	KindTimeout Kind = "script_timeout"
	// KindMalformed: the function returned something that is not a valid
	// result (an action with an unknown field, a value that cannot be encoded).
	KindMalformed Kind = "malformed_action"
	// KindLoad: the script does not compile, or its top level fails or does
	// not return the table of functions.
	KindLoad Kind = "script_load"
)

// ScriptError is an error of an integration script. Where is the script's
// "file:line" (the failing line when Lua knows it, else the line the
// function is defined on); Func the integration function that was called.
type ScriptError struct {
	Kind  Kind
	Func  string
	Where string
	Msg   string
}

func (e *ScriptError) Error() string {
	switch {
	case e.Func == "":
		return fmt.Sprintf("%s: %s", e.Where, e.Msg)
	case e.Where == "":
		return fmt.Sprintf("%s: %s", e.Func, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Where, e.Func, e.Msg)
}

// ErrBrokerData is the cause of a call that could not run because the
// broker's entity for its key is not valid JSON, or nested deeper than
// max_depth: another program wrote it (SPEC sections 5.7 and 6). The host
// treats it as a broker failure (CodeBrokerDataInvalid), not as bad input
// from the client.
var ErrBrokerData = errors.New("the stored entity is not valid JSON")

// CodeBrokerDataInvalid is the error code of ErrBrokerData.
const CodeBrokerDataInvalid = "broker_data_invalid"

// Code is the client-facing error code of err: a ScriptError's kind, a
// DataError's code, or "" for anything else.
func Code(err error) string {
	var se *ScriptError
	if errors.As(err, &se) {
		return string(se.Kind)
	}
	var de *DataError
	if errors.As(err, &de) {
		return de.Code
	}
	return ""
}
