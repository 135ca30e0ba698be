package engine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker"
)

// TestBrokerErrorsToClients: each broker failure has its own code, and an
// update whose outcome is unknown is never reported as "nothing was
// committed" (SPEC 5.7).
func TestBrokerErrorsToClients(t *testing.T) {
	unknown := fmt.Errorf("%w: update k on redis x: %w", broker.ErrUnavailable,
		fmt.Errorf("%w: the reply was lost", broker.ErrOutcomeUnknown))
	for _, c := range []struct {
		err       error
		code      string
		committed bool // the message says nothing was committed
	}{
		{fmt.Errorf("%w: update k", broker.ErrConflict), CodeBrokerConflict, true},
		{fmt.Errorf("%w: update k", broker.ErrUnavailable), CodeBrokerUnavailable, true},
		{unknown, CodeBrokerOutcomeUnknown, false},
	} {
		code := BrokerCode(c.err)
		if code != c.code {
			t.Errorf("%v: code %q, want %q", c.err, code, c.code)
		}
		msg := brokerMessage(code)
		if says := strings.Contains(msg, "nothing was committed"); says != c.committed {
			t.Errorf("%s: message %q; says nothing was committed: %v, want %v", code, msg, says, c.committed)
		}
	}
}
