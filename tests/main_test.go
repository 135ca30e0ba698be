package tests

import (
	"testing"

	"github.com/electric-socket/electric-socket/tests/skipreport"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// TestMain prints a line for each test skipped for a missing real
// component, which a plain go test would hide behind "ok", and removes the
// binary testkit built.
func TestMain(m *testing.M) { skipreport.Main(m, testkit.Cleanup) }
