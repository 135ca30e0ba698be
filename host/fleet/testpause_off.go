//go:build !estest

package fleet

import "log/slog"

// testPause is the test hook of tests/fleet_test.go (testpause_estest.go).
// The production binary, built without -tags estest, has this no-op
// instead: no environment variable of a test is read by a server.
type testPause struct{}

func testPauseFromEnv(*slog.Logger) *testPause { return nil }

func (*testPause) gate() {}

func (*testPause) ran(bool, *slog.Logger) {}
