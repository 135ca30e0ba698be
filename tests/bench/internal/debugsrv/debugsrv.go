// Package debugsrv serves what the load generator reads from the bench
// binaries (refserver, profiled): runtime counters at /debug/mallocs, so
// that allocations per message can be computed over a measured window, and
// net/http/pprof at /debug/pprof/.
package debugsrv

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

// Start listens on addr ("" does nothing) and serves in the background.
func Start(addr string) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/mallocs", func(w http.ResponseWriter, r *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"mallocs": m.Mallocs, "total_alloc": m.TotalAlloc, "num_gc": m.NumGC,
			"heap_inuse": m.HeapInuse, "stack_inuse": m.StackInuse, "goroutines": runtime.NumGoroutine(),
		})
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "debug listener: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "debug listening addr=%s\n", l.Addr())
	go http.Serve(l, mux)
}
