//go:build !linux

package ws

// Poll mode is Linux-only; elsewhere every connection has a reader
// goroutine (conn_read.go).

func canPoll(c *wsConn) bool { return false }
func arm(c *wsConn) error    { return nil }
func unpoll(c *wsConn)       {}
