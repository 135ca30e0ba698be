package luabridge

import (
	"encoding/json"
	"unicode/utf8"
)

// Codes of the errors CheckMessage returns, sent to the client as
// {"id":"error","error":<code>}; all close the connection with 1007.
const (
	CodeInvalidJSON = "invalid_json"
	CodeNotObject   = "not_an_object"
	CodeTooDeep     = "too_deep"
)

// CheckMessage checks a client's text frame before any script sees it: it
// must be valid UTF-8 JSON, an object, nested at most maxDepth deep. It does
// not allocate: the frame is converted once per call, inside the update.
func CheckMessage(data []byte, maxDepth int) error {
	if !utf8.Valid(data) {
		return &DataError{Code: CodeInvalidJSON, Msg: "the message is not valid JSON"}
	}
	// json.Valid also refuses JSON nested deeper than encoding/json's own
	// limit (10000): the depth scan below tells that apart from bad syntax.
	valid := json.Valid(data)
	depth, max := 0, 0
	inString, escaped := false, false
	first := byte(0)
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				max = depth
			}
		case '}', ']':
			depth--
		}
		if first == 0 {
			first = c
		}
	}
	if !valid {
		if max > maxDepth {
			return &DataError{Code: CodeTooDeep, Msg: "the message is nested deeper than the limit"}
		}
		return &DataError{Code: CodeInvalidJSON, Msg: "the message is not valid JSON"}
	}
	if first != '{' {
		return &DataError{Code: CodeNotObject, Msg: "the message must be a JSON object"}
	}
	if max > maxDepth {
		return &DataError{Code: CodeTooDeep, Msg: "the message is nested deeper than the limit"}
	}
	return nil
}
