package broker

import (
	"testing"

	"github.com/electric-socket/electric-socket/tests/skipreport"
)

// TestMain prints a line for each test skipped for a missing real
// component, which a plain go test would hide behind "ok".
func TestMain(m *testing.M) { skipreport.Main(m) }
