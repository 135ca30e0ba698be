// Package testkit is what the tests of every package share, defined once:
// a log buffer, Eventually, FreeAddr, MetricValue, the echo script, a
// WebSocket client that is not the server's library, WebSocket by hand
// over TCP (the handshake and frames), a webhook receiver, and the
// electric-socket binary built once per test process.
//
// It imports nothing of electric-socket, so that any package's own tests
// may use it.
package testkit
