package luabridge

import (
	"context"
	"errors"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
)

// Broker data that does not decode (another program wrote the entity, or
// it is nested deeper than max_depth) is ErrBrokerData, never a *DataError
// (which the host answers as the client's bad input, 1007), for every
// function that gets broker data.
func TestBrokerDataInvalid(t *testing.T) {
	s := mustLoad(t, `local M = {}
function M.initial_authorisation() return {} end
function M.broker_authorisation() return {} end
function M.process_websocket_message() return {} end
function M.process_broker_message() return {} end
function M.on_close() return {} end
return M
`, Options{MaxDepth: 3})
	ctx, ch := context.Background(), testChannel()
	env := broker.Envelope{Target: "x", Message: []byte(`{}`), BrokerKey: "k", Source: "s"}
	for _, bd := range []string{`not json`, `{"a":`, `{"a":{"b":{"c":{}}}}`, "\xff"} {
		for name, call := range map[string]func() (*Action, error){
			"broker_authorisation":      func() (*Action, error) { return s.BrokerAuthorisation(ctx, ch, nil, []byte(bd)) },
			"process_websocket_message": func() (*Action, error) { return s.ProcessWebsocketMessage(ctx, ch, []byte(`{}`), nil, []byte(bd)) },
			"process_broker_message":    func() (*Action, error) { return s.ProcessBrokerMessage(ctx, ch, env, nil, []byte(bd)) },
			"on_close":                  func() (*Action, error) { return s.OnClose(ctx, ch, nil, []byte(bd)) },
		} {
			a, err := call()
			var de *DataError
			if !errors.Is(err, ErrBrokerData) || errors.As(err, &de) || a != nil {
				t.Errorf("%s with broker data %q: got %v (%T), %v; want ErrBrokerData and no DataError", name, bd, err, err, a)
			}
			if Code(err) != "" {
				t.Errorf("%s: Code = %q, want none (the host names it %s)", name, Code(err), CodeBrokerDataInvalid)
			}
		}
	}
	// The message itself not being JSON is still the client's (invalid_json).
	_, err := s.ProcessWebsocketMessage(ctx, ch, []byte(`{`), nil, []byte(`{}`))
	if Code(err) != "invalid_json" || errors.Is(err, ErrBrokerData) {
		t.Errorf("a bad message: got %v (code %q), want invalid_json", err, Code(err))
	}
}
