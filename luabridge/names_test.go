package luabridge

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/electric-socket/electric-socket/broker"
)

// A returned key that is not one of the seven function names is an error
// at load, naming the key, its line and the nearest name (SPEC section 1):
// a misspelt process_broker_mesage must not leave the default in place.
func TestUnknownFunctionNames(t *testing.T) {
	const head = "local M = {}\nfunction M.initial_authorisation() return {} end\nfunction M.process_websocket_message() return {} end\n"
	for _, tt := range []struct {
		name, src string
		where     string // "" for the file alone
		contains  []string
	}{
		{"misspelt optional function", head + "function M.process_broker_mesage(channel, message) return {} end\nreturn M\n", at(4),
			[]string{`the key "process_broker_mesage", which is not an integration function: did you mean process_broker_message?`}},
		{"another spelling", head + "M.on_closed = function() return {} end\nreturn M\n", at(4),
			[]string{`"on_closed"`, "did you mean on_close?"}},
		{"camel case", head + "function M.brokerAuthorization() return {} end\nreturn M\n", at(4),
			[]string{`"brokerAuthorization"`, "did you mean broker_authorisation?"}},
		{"nothing near", head + "function M.helper() end\nreturn M\n", at(4),
			[]string{`the key "helper", which is not an integration function (the seven are initial_authorisation, channel_identifier, broker_key, broker_authorisation, process_websocket_message, process_broker_message, on_close)`}},
		{"not a function", head + "M.version = 3\nreturn M\n", "",
			[]string{`the key "version"`, "the seven are"}},
		{"a number key", head + "M[1] = function() end\nreturn M\n", at(4), []string{"the key [1]"}},
		{"two, in the order of the file", head + "function M.on_closee() end\nfunction M.broker_kye() end\nreturn M\n", at(4),
			[]string{`"on_closee", which is not an integration function: did you mean on_close?; the returned table has the key "broker_kye", which is not an integration function (line 5): did you mean broker_key?`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			se := loadErr(t, tt.src, Options{Timeout: time.Second})
			where := tt.where
			if where == "" {
				where = testName
			}
			if se.Kind != KindLoad || se.Where != where {
				t.Errorf("got %s at %q, want %s at %q (error: %v)", se.Kind, se.Where, KindLoad, where, se)
			}
			for _, c := range tt.contains {
				if !strings.Contains(se.Error(), c) {
					t.Errorf("error %q does not contain %q", se.Error(), c)
				}
			}
		})
	}
}

// With the right name the function runs (and not the default, which
// would forward the message).
func TestCorrectNameIsCalled(t *testing.T) {
	s := mustLoad(t, "local M = {}\nfunction M.initial_authorisation() return {} end\nfunction M.process_websocket_message() return {} end\n"+
		"function M.process_broker_message(channel, message) return { websocket_response = { mine = true } } end\nreturn M\n", Options{})
	a, err := s.ProcessBrokerMessage(context.Background(), testChannel(),
		broker.Envelope{Target: "x", Message: []byte(`{"internal":1}`), BrokerKey: "k", Source: "s"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Response) != `{"mine":true}` {
		t.Errorf("response %s, want the script's", a.Response)
	}
}

func TestNearestFunction(t *testing.T) {
	for key, want := range map[string]string{
		"process_broker_mesage":      "process_broker_message",
		"processBrokerMessage":       "process_broker_message",
		"initial_authorization":      "initial_authorisation",
		"on_close_":                  "on_close",
		"broker_keys":                "broker_key",
		"channel_id":                 "",
		"helper":                     "",
		"process_websocket_messages": "process_websocket_message",
		"":                           "",
	} {
		if got := nearestFunction(key); got != want {
			t.Errorf("nearestFunction(%q) = %q, want %q", key, got, want)
		}
	}
}
