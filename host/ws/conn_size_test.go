package ws

import (
	"testing"
	"unsafe"
)

// Every open connection holds one wsConn, most of them idle for hours:
// its size is a share of BENCHMARKS.md's memory per idle connection. It
// holds the server's Options by pointer and no control-frame buffer
// (680 bytes when it held both, a 704-byte allocation); grow it knowingly.
func TestWsConnStaysSmall(t *testing.T) {
	const budget = 416 // a size class of Go's allocator
	if n := unsafe.Sizeof(wsConn{}); n > budget {
		t.Errorf("wsConn is %d bytes, over its budget of %d", n, budget)
	}
}
