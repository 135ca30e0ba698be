//go:build !linux

package ws

// writeNow is Linux-only (a non-blocking writev): elsewhere the writer
// writes everything.
func (c *wsConn) writeNow() bool { return false }
